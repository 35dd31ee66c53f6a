"""The command line's shared pieces: one seconds parser, and every long-running command
stopped the one way (plumbing.signals.stop_on), so SIGTERM ends it as Ctrl-C does."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from commands.common import DAY_S, seconds
from conftest import assert_all_gone, wait_until


@pytest.mark.parametrize(
    ("bounds", "text", "why"),
    [
        ({}, "nan", "expected a number of seconds"),
        ({}, "soon", "expected a number of seconds"),
        ({"above": 0}, "0", "more than 0 seconds"),
        ({"at_least": 1, "at_most": 3600}, "0.5", "at least 1 seconds"),
        ({"above": 0, "at_most": DAY_S}, "90000", "at most 86400 seconds (a day)"),
    ],
)
def test_the_seconds_parser_says_what_is_wrong_in_one_line(
    bounds: dict[str, float], text: str, why: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"^[^\n]+$") as e:
        seconds(**bounds)(text)
    assert why in str(e.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "nosuch"],
        ["run", "--model", "nosuch", "--duration", "1"],
        ["compare", "--models", "nosuch,single", "--duration", "1"],
        ["--model", "nosuch"],
    ],
)
def test_an_unknown_model_is_refused_naming_the_models_and_the_originals(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """It listed the nine Python models only, though every command takes the originals."""
    from commands import main as cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown model 'nosuch'" in err, err
    assert "goroutines" in err and "node:many_accepts" in err and "apache:event" in err, err


def test_the_seconds_parser_accepts_values_inside_its_bounds() -> None:
    assert seconds(above=0, at_most=DAY_S)("0.25") == 0.25
    assert seconds(at_least=1, at_most=3600)("1") == 1.0
    assert seconds()("-3") == -3.0  # unbounded: the model's own config checks its knobs


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_attach_ends_on_a_stop_signal_with_its_recording_closed(
    sig: signal.Signals, tmp_path: Path
) -> None:
    """attach used to die on SIGTERM (no handler): now it leaves its loop, exit 0."""
    cmd = [sys.executable, "-m", "serverscope"]
    serve = subprocess.Popen([*cmd, "serve", "single"], stdout=subprocess.PIPE, text=True)
    attach = None
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        port = line.split("http://127.0.0.1:")[1].split("/")[0]
        rec = tmp_path / "attach.jsonl"
        attach = subprocess.Popen(
            [*cmd, "attach", "--port", port, "--json", "--record", str(rec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: rec.exists() and len(rec.read_text().splitlines()) >= 3, 20, "samples")
        attach.send_signal(sig)
        out, err = attach.communicate(timeout=20)
        assert attach.returncode == 0, err
        assert out.splitlines() and all(json.loads(x)["listeners"] for x in out.splitlines())
        rows = rec.read_text().splitlines()
        assert len(rows) >= 3 and all(json.loads(r) for r in rows)  # whole lines: closed
    finally:
        if attach is not None and attach.poll() is None:
            attach.kill()
            attach.wait(10)
        serve.send_signal(signal.SIGTERM)
        serve.wait(20)
    assert_all_gone([serve.pid, attach.pid if attach else serve.pid])
