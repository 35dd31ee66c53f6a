"""`serverscope fix` and `diff` against real runs, as docs/fix-and-diff.md shows them (every
command of its first block runs here as written), and f in the live lab."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import synthetic
from commands.main import main
from conftest import assert_all_gone
from lab.session import Session
from loadgen.levels import PRESETS
from servers.config import ServerConfig
from tui.app import ServerscopeApp
from tui.screens import fix as fix_screen
from tui.screens.fix import FixScreen
from tui.screens.live import LiveScreen
from tui.source import LiveSource
from values.findings import Diagnosis, Severity
from values.recording import RecordingWriter

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
DOC = ROOT / "docs" / "fix-and-diff.md"


def docs_commands() -> list[str]:
    """The commands of the page's first code block, in order."""
    block = DOC.read_text(encoding="utf-8").split("```console\n", 1)[1].split("```", 1)[0]
    return [ln.strip() for ln in block.splitlines() if ln.startswith("serverscope ")]


def cli(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "serverscope", *shlex.split(command)[1:]]
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "160"}
    )


@pytest.mark.solo  # two runs' latency and throughput compared: the cores to themselves
@pytest.mark.slow
def test_the_docs_commands_fix_skew_and_find_no_difference_between_two_same_runs(
    tmp_path: Path,
) -> None:
    commands = docs_commands()
    assert [c.split()[1] for c in commands] == ["fix", "diff", "run", "run", "diff"], commands
    outs = []
    for command in commands:
        p = cli(command, tmp_path)
        assert p.returncode == 0, f"{command}\n{p.stdout}\n{p.stderr}"
        outs.append(p.stdout)
    fixed, fix_diff, _, _, same = outs
    assert "chart saved to verdict.svg" in fix_diff, fix_diff
    # fix: many_accepts' skew, reuseport as its remedy, the top share falls, p < 0.001
    assert "diagnosis (accept_skew)" in fixed and "remedy: reuseport" in fixed, fixed
    m = re.search(r"verdict: top share of accepts (\d+)% -> (\d+)% \(p < 0\.001\)", fixed)
    assert m and int(m[1]) > int(m[2]) + 15, fixed
    report = json.loads((tmp_path / "fix.json").read_text())
    top = next(f for f in report["verdict"]["figures"] if f["figure"] == "accept_top_share")
    assert top["significant"] and top["p_holm"] < 0.001 and top["verdict"] == "better"
    p99 = next(f for f in report["verdict"]["figures"] if f["figure"] == "latency_p99")
    assert p99["p_holm"] is not None  # judged: real recordings carry the client's histogram
    pids = [w["pid"] for run in ("before_run", "after_run") for w in report[run]["workers"]]
    assert_all_gone(pids)  # every worker of both runs gone with the command
    # diff on the two recordings fix made: the same engine, the same verdict
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["figures"] == report["verdict"]["figures"]
    assert (tmp_path / "verdict.svg").read_text().startswith("<svg")
    # two runs of one setup: nothing to tell apart
    assert "verdict: no significant difference in" in same, same


def stall_command() -> str:
    """The page's `--fault` line (its own block, in the stalled worker's section)."""
    text = DOC.read_text(encoding="utf-8").split("## A stalled worker", 1)[1]
    block = text.split("```console\n", 1)[1].split("```", 1)[0]
    (line,) = [ln.strip() for ln in block.splitlines() if ln.startswith("serverscope ")]
    return line


def _row(report: dict, key: str) -> dict:
    return next(f for f in report["verdict"]["figures"] if f["figure"] == key)


@pytest.mark.solo  # two runs' queues and requests in flight compared: the cores to themselves
@pytest.mark.slow
def test_the_docs_stall_fix_pauses_the_same_worker_in_both_runs_and_the_queue_drains(
    tmp_path: Path,
) -> None:
    command = stall_command()
    assert "--fault pause:0@0.5" in command, command
    p = cli(command, tmp_path)
    assert p.returncode == 0, f"{command}\n{p.stdout}\n{p.stderr}"
    out = re.sub(r"\s+", " ", p.stdout)
    # the mechanism read: the worker's /proc state and its own queue, then the remedy
    assert "diagnosis (stalled_owner): stalled worker: worker 0 is stopped (/proc state T)" in out
    assert "in its own reuseport queue" in out and "remedy: shared-queue" in out, out
    assert "fault, in both runs: pause (SIGSTOP) worker 0 after 0.5 s" in out, out
    # the stopped worker's requests never complete: latency leaves them out, the note says
    assert re.search(r"note: \d+ then \d+ requests were unanswered when the runs ended", out)
    report = json.loads((tmp_path / "stall.json").read_text())
    assert report["after_config"]["model"] == "many_accepts", report["after_config"]
    when = []
    for run in ("before_run", "after_run"):
        (did,) = report[run]["faults"]
        m = re.fullmatch(r"pause worker 0 \(pid \d+\) at (\d+\.\d+) s", did)
        assert m, did
        when.append(float(m[1]))
    assert all(0.5 <= t < 0.75 for t in when), when  # the same moment into each load
    assert "stalled_owner" not in [d["rule"] for d in report["after_run"]["diagnoses"]]
    queue, waiting = _row(report, "queue"), _row(report, "in_flight")
    assert queue["significant"] and queue["verdict"] == "better", queue
    assert queue["before"] > 20 * max(1.0, queue["after"]), queue  # the stopped worker's
    # stranded, then a handful (fewer: seen 127 after once, the machine's others using
    # 1.6 of its 2 cores, and the three workers 2 s behind; this test runs solo)
    assert waiting["before"] > waiting["after"], waiting
    assert report["headline"].startswith("requests waiting (mean in flight)"), report["headline"]
    pids = [w["pid"] for run in ("before_run", "after_run") for w in report[run]["workers"]]
    assert_all_gone(pids)  # the paused workers too (resumed, then stopped)


def test_fix_refuses_what_it_cannot_do_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cases = [
        (["--load", "storm"], 2, "--model is required"),
        (["--model", "single", "--before", "a.jsonl", "--after", "a.jsonl"], 2, "same file"),
        (["--model", "many_accepts", "--remedy", "event"], 1, "no remedy 'event'"),
        (["--model", "many_accepts", "--clients", "0"], 2, "clients must be between 1"),
        (["--model", "reuseport", "--fault", "sleep:0"], 2, "the action is one of pause"),
        (["--model", "reuseport", "--duration", "2", "--fault", "pause:0@3"], 2, "lasts 2 s"),
    ]
    for args, code, why in cases:
        assert main(["fix", *args]) == code
        out = capsys.readouterr()
        said = (out.err + out.out).strip()
        assert why in said and "Traceback" not in said, said
    assert not list(tmp_path.iterdir())  # nothing ran, nothing recorded


def test_fix_list_names_each_diagnosis_s_remedies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fix", "--list"]) == 0
    out = capsys.readouterr().out
    for words in (
        "accept_skew",
        "reuseport",
        "starvation",
        "keepalive-1s",
        "gil_cap",
        "stalled_owner",
        "shared-queue",
        "migrate+watchdog",
    ):
        assert words in out, out


# -- f in the live lab ----------------------------------------------------------------------


def aio(fn):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        return asyncio.run(fn(*args, **kwargs))

    return run


async def wait_for(cond, timeout: float = 15.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def press_f_on_skew(app: ServerscopeApp, pilot) -> None:  # type: ignore[no-untyped-def]
    """Freeze the lab (the diagnosis set here stays the one on screen), show a skew
    diagnosis, press `f`."""
    await pilot.press("space")
    last = app.lab.last
    assert last is not None
    skew = Diagnosis("accept_skew", Severity.WARNING, "accept skew: worker 0 took 96%")
    app.lab.last = dataclasses.replace(last, diagnoses=(skew,))
    await pilot.press("f")


async def fix_on_skew(app: ServerscopeApp, pilot) -> FixScreen:  # type: ignore[no-untyped-def]
    """`press_f_on_skew`, then the fix screen."""
    await press_f_on_skew(app, pilot)
    await wait_for(lambda: isinstance(app.screen, FixScreen), what="the fix screen")
    screen = app.screen
    assert isinstance(screen, FixScreen)
    return screen


@aio
async def test_f_runs_the_setup_and_its_remedy_shows_the_verdict_and_goes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runs are synthetic recordings here (the real ones are the docs test's): what is
    under test is the key, the lab stopped while the runs go, the verdict on screen, and
    the lab back as it was (escape) or on the remedy (a)."""
    runs: list[tuple[str, float, bool]] = []

    def fake_run(cfg, level, *, period, record, stop, on_sample, faults):  # type: ignore[no-untyped-def]
        assert faults == ()  # nothing paused on screen: no fault in either run
        runs.append((cfg.model, level.duration, source.session.server is None))
        skewed = cfg.model == "many_accepts" and cfg.accept_policy == "all"
        snaps = synthetic.noisy(24, seed=len(runs), weights=[6, 1, 1, 1] if skewed else None)
        with RecordingWriter(record) as w:
            for s in snaps:
                w.write(s)
        on_sample(snaps[-1], level.duration)
        rules = ["accept_skew"] if skewed else []
        return SimpleNamespace(ok=True, interrupted=False, rules_seen=lambda: rules, result=None)

    monkeypatch.setattr(fix_screen, "run_headless", fake_run)
    level = PRESETS["steady"].with_(clients=4, rate=50, duration=30)
    source = LiveSource(Session(ServerConfig(model="many_accepts", workers=2), level))
    app = ServerscopeApp(LiveScreen(source, load_duration=30, fix_seconds=2))
    seen: set[int] = set()
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(lambda: app.lab.last is not None, what="the first frame")
        seen |= set(source.pids())
        screen = await fix_on_skew(app, pilot)
        await wait_for(lambda: screen.outcome is not None, 30, "the verdict")
        # plain epoll: puma's less-busy first (the same model, its accept policy changed)
        assert runs == [("many_accepts", 2.0, True), ("many_accepts", 2.0, True)]
        verdict = str(screen.query_one("#fix-verdict").content)
        assert "top share of accepts" in verdict and "(p < 0.001)" in verdict, verdict
        assert "before.jsonl" in str(screen.query_one("#fix-files").content)
        await pilot.press("escape")
        await wait_for(lambda: source.session.server is not None, what="the lab to start again")
        assert source.session.config.model == "many_accepts"
        seen |= set(source.pids())
        await pilot.press("f")  # again, and this time the remedy is applied in the lab
        await wait_for(lambda: isinstance(app.screen, FixScreen), what="the fix screen")
        await wait_for(lambda: app.screen.outcome is not None, 30, "the verdict")  # type: ignore[attr-defined]
        await pilot.press("a")
        await wait_for(
            lambda: (
                source.session.server is not None
                and source.session.config.accept_policy == "less-busy"
            ),
            what="the lab on the remedy",
        )
        seen |= set(source.pids())
        await pilot.press("q")
        await wait_for(lambda: source.closed, what="the session to close")
    assert_all_gone(sorted(seen), timeout=10)


@aio
async def test_q_during_a_fix_run_stops_its_server_and_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fix's own runs are processes too: quitting mid-run leaves none of them."""
    sessions: list[Session] = []

    def factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        sessions.append(Session(*args, **kwargs))
        return sessions[-1]

    real = fix_screen.run_headless
    monkeypatch.setattr(
        fix_screen, "run_headless", lambda *a, **k: real(*a, session_factory=factory, **k)
    )
    level = PRESETS["steady"].with_(clients=4, rate=50, duration=30)
    source = LiveSource(Session(ServerConfig(model="many_accepts", workers=2), level))
    app = ServerscopeApp(LiveScreen(source, load_duration=30, fix_seconds=30))
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(lambda: app.lab.last is not None, what="the first frame")
        pids = set(source.pids())
        await press_f_on_skew(app, pilot)

        def running() -> bool:
            s = sessions[0] if sessions else None
            return bool(s and s.server and s.runner and s.runner.child)

        await wait_for(running, 20, "the fix's before run with its load")
        fix_run = LiveSource(sessions[0])  # (for its pids() only)
        pids |= set(fix_run.pids())
        assert len(pids) >= 6  # the lab's root, workers, load; the fix run's too
        await pilot.press("q")
        await wait_for(lambda: source.closed, what="the session to close")
    assert_all_gone(sorted(pids), timeout=10)
