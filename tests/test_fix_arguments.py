"""`serverscope fix` refuses a bad argument in one line, with exit status 2 (its --help and
docs/fix-and-diff.md: "2 for a bad argument"), before any run: a remedy no model has, a
knob out of range, a fault on a worker the setup does not have. Seen: `--remedy nosuch`
and `--workers 0` exited 1 ("nothing to fix", "could not start" after a blank line), and
`--fault pause:9@0.5` on reuseport's 4 workers ran the whole before run first."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.main import main


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--model", "reuseport", "--remedy", "nosuch"], "--remedy 'nosuch' is not a remedy"),
        (["--model", "reuseport", "--workers", "0"], "--workers must be between 1 and 1024"),
        (["--model", "many_accepts", "--no-such-knob-check", "x"], None),
        (["--model", "reuseport", "--fault", "pause:9@0.5"], "reuseport has 4 workers"),
        (["--model", "cluster", "--workers", "2", "--fault", "kill:2@0.5"], "slots 0-1"),
    ],
    ids=["unknown-remedy", "knob-out-of-range", "unknown-option", "slot-9-of-4", "slot-2-of-2"],
)
def test_a_bad_fix_argument_is_one_line_exit_2_and_nothing_runs(
    args: list[str],
    why: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["fix", *args, "--duration", "1", "--load", "light"])
    except SystemExit as e:  # argparse's own refusal
        code = e.code
    out = capsys.readouterr()
    said = (out.err + out.out).strip()
    assert code == 2, said
    assert "Traceback" not in said and len(said.splitlines()) == 1, said
    if why is not None:
        assert why in said, said
    assert not list(tmp_path.iterdir()), said  # nothing ran, nothing recorded
