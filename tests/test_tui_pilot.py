"""Pilot tests of the TUI against live servers: switch the model, change the load, inject
each fault, quit; every pid (server root, workers, load generator) is checked after quit.
Also: replay controls, bad input in the choosers, start-up errors, and the real command
under a pseudo-terminal closed by SIGHUP."""

from __future__ import annotations

import asyncio
import functools
import os
import pty
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, Select

import tui_scenarios
from conftest import assert_all_gone
from lab.session import Session
from loadgen.levels import PRESETS
from servers.config import ServerConfig
from tui.app import ServerscopeApp
from tui.screens.live import LiveScreen
from tui.screens.load import LoadScreen
from tui.screens.model import ModelScreen
from tui.screens.replay import ReplayScreen
from tui.source import LiveSource, ReplaySource
from tui.worker_table import WorkerTable
from values.recording import RecordingWriter, read_recording

# timed answers to keys and a burning worker's CPU share: the machine's cores to itself
pytestmark = pytest.mark.solo

ROOT = Path(__file__).resolve().parents[1]


def aio(fn):  # type: ignore[no-untyped-def]
    """Run an async test with asyncio.run (no pytest-asyncio needed)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        return asyncio.run(fn(*args, **kwargs))

    return run


LOAD = PRESETS["burst"].with_(clients=4, duration=30)


async def wait_for(pilot: Pilot, cond, timeout: float = 10.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)  # (not pilot.pause: it can wait forever once the app exits)


def live_app(model: str = "many_accepts", **knobs: object) -> tuple[ServerscopeApp, LiveSource]:
    source = LiveSource(Session(ServerConfig(model=model, **knobs), LOAD))  # type: ignore[arg-type]
    return ServerscopeApp(LiveScreen(source, load_duration=30)), source


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def events(source: LiveSource, kind: str) -> list[str]:
    return [e.message for e in source.session.events if e.kind == kind]


@aio
async def test_live_switch_load_faults_quit() -> None:
    app, source = live_app(workers=2)
    seen: set[int] = set()
    async with app.run_test(size=(120, 36)) as pilot:
        t0 = time.monotonic()
        await wait_for(pilot, lambda: app.lab.last is not None, what="the first live frame")
        assert time.monotonic() - t0 < 3.0
        await wait_for(pilot, lambda: len(source.pids()) >= 4, what="server + load pids")
        seen |= set(source.pids())

        # the table has the focus: down moves the selection to the second worker
        await pilot.press("down")
        await wait_for(pilot, lambda: app.lab.selected_pid() is not None, what="a selection")
        pid = app.lab.selected_pid()
        assert pid is not None and app.lab.selected is not None and app.lab.selected[0] == 1

        # pause: SIGSTOP, then SIGCONT
        t = time.monotonic()
        await pilot.press("p")
        assert time.monotonic() - t < 0.5  # answered at once while the load runs
        assert pid in source.session.paused_pids
        await wait_for(pilot, lambda: proc_state(pid) == "T", 3, "the worker to stop")
        await pilot.press("p")
        await wait_for(pilot, lambda: proc_state(pid) != "T", 3, "the worker to continue")
        assert any("SIGCONT" in m for m in events(source, "fault"))

        # burn: SIGUSR1 (the worker burns ~3 s of CPU when its handler is in place)
        await pilot.press("b")
        assert any("burns CPU" in m for m in events(source, "fault"))

        def burning() -> bool:
            last = app.lab.last
            w = next((w for w in last.workers if w.pid == pid), None) if last else None
            return w is not None and (w.cpu_percent or 0) > 40

        await wait_for(pilot, burning, 4, "the burning worker's CPU to rise")

        # load: + doubles the clients, the chooser sets clients and rate
        await pilot.press("plus")
        await wait_for(pilot, lambda: source.session.level.clients == 8, what="8 clients")
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, LoadScreen)
        screen.query_one("#clients", Input).value = "3"
        screen.query_one("#rate", Input).value = "200"
        await pilot.press("tab")  # (any field) enter applies
        screen.query_one("#clients", Input).focus()
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: (
                source.session.level is not None
                and source.session.level.clients == 3
                and source.session.level.rate == 200
            ),
            what="the new load",
        )

        # kill: SIGKILL; the death is logged
        await pilot.press("k")
        await wait_for(pilot, lambda: not psutil.pid_exists(pid) or proc_state(pid) == "Z", 3)
        assert any(f"killed pid {pid}" in m for m in events(source, "fault"))

        # switch the model through the chooser: reuseport with 3 workers
        await pilot.press("m")
        screen = app.screen
        assert isinstance(screen, ModelScreen)
        screen.query_one("#model-select", Select).value = "reuseport"
        await wait_for(pilot, lambda: screen.knobs_for == "reuseport", what="reuseport's knobs")
        screen.query_one("#knob-workers", Input).value = "3"
        screen.query_one("#knob-workers", Input).focus()
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: (
                app.lab.last is not None
                and app.lab.last.model is not None
                and app.lab.last.model.name == "reuseport"
                and len(app.lab.last.listeners) == 3
            ),
            15,
            "reuseport to run",
        )
        seen |= set(source.pids())
        assert len(app.query_one(WorkerTable).rows) == 3

        # quit with q: everything stops
        await pilot.press("q")
        await wait_for(pilot, lambda: source.closed, 15, "the session to close")
    assert_all_gone(sorted(seen), timeout=10)


@aio
async def test_kill_respawn_prefork_and_ctrl_c() -> None:
    app, source = live_app("prefork", start_servers=2, min_spare=1, max_spare=4, max_workers=6)
    seen: set[int] = set()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.lab.selected_pid() is not None, what="a worker")
        seen |= set(source.pids())
        pid = app.lab.selected_pid()
        assert app.lab.fault("kill", pid)
        await wait_for(pilot, lambda: events(source, "death"), 10, "the master to report the death")
        seen |= set(source.pids())
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: source.closed, 15, "the session to close")
    assert_all_gone(sorted(seen), timeout=10)


@aio
async def test_demo_plays_its_steps_and_repeats_a_master_fault() -> None:
    from lab.catalogue import SCENARIOS
    from lab.player import DemoPlayer
    from lab.scenarios import with_seconds
    from tui.screens.demo import DemoScreen

    scenario = with_seconds(SCENARIOS["master"], 4.0)
    player = DemoPlayer(scenario)
    source = LiveSource(Session(scenario.steps[0].config, player.level(scenario.steps[0])))
    app = ServerscopeApp(DemoScreen(source, scenario))
    seen: set[int] = set()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.lab.last is not None, 15, "the first step")
        seen |= set(source.pids())
        # step 2 burns the master after 2 s and again every 2.5 s: at least twice in 7 s
        burns = lambda: [e for e in events(source, "demo") if "burn" in e]  # noqa: E731
        await wait_for(pilot, lambda: len(burns()) >= 2, 20, "two burns of the master")
        assert all("master pid" in e for e in burns()), burns()
        seen |= set(source.pids())
        await pilot.press("q")
        await wait_for(pilot, lambda: source.closed, 15, "the session to close")
    assert_all_gone(sorted(seen), timeout=10)


@aio
async def test_bad_input_is_one_line_and_keeps_the_dialog() -> None:
    app, source = live_app(workers=2)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.lab.last is not None)
        pids = source.pids()
        await pilot.press("m")
        screen = app.screen
        assert isinstance(screen, ModelScreen)
        await wait_for(pilot, lambda: screen.knobs_for == "many_accepts")
        screen.query_one("#knob-workers", Input).value = "abc"
        screen.query_one("#knob-workers", Input).focus()
        await pilot.press("enter")
        message = str(screen.query_one("#model-error", Label).render())
        assert "whole number" in message and "\n" not in message
        assert app.screen is screen
        screen.query_one("#knob-workers", Input).value = "5000"
        await pilot.press("enter")
        assert "between 1 and 1024" in str(screen.query_one("#model-error", Label).render())
        await pilot.press("escape")
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, LoadScreen)
        screen.query_one("#clients", Input).value = "0"
        screen.query_one("#clients", Input).focus()
        await pilot.press("enter")
        assert "clients must be between" in str(screen.query_one("#load-error", Label).render())
        await pilot.press("escape")
        assert source.session.config.workers == 2  # nothing changed
        await pilot.press("q")
        await wait_for(pilot, lambda: source.closed, 15)
    assert_all_gone(pids, timeout=10)


@aio
async def test_startup_error_exits_2_with_one_line() -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        app, source = live_app(workers=2, port=port)
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: app.lab.startup_error is not None, 10, "the error")
            await pilot.pause(0.2)
        assert app.return_code == 2
        assert f"127.0.0.1:{port}" in (app.lab.startup_error or "")
        assert "\n" not in (app.lab.startup_error or "")
        assert source.closed
    finally:
        busy.close()


@aio
async def test_replay_pause_seek_step(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path, meta={"model": "many_accepts"}) as rec:
        for snap in tui_scenarios.many_accepts_burst():
            rec.write(snap)
    snaps = list(read_recording(path))
    source = ReplaySource(snaps, name=str(path))
    app = ServerscopeApp(ReplayScreen(source))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.lab.last is not None)
        await pilot.press("space")  # pause
        assert not source.playing
        here = source.position_s
        await pilot.press("right_square_bracket")
        assert source.position_s == pytest.approx(here + 5, abs=0.3)
        assert app.lab.last is source.current  # drawn at once, while paused
        await pilot.press("left_square_bracket")
        assert source.position_s == pytest.approx(here, abs=0.3)
        await pilot.press("comma")
        assert app.lab.last is snaps[source._shown]
        await pilot.press("space")
        assert source.playing
        # faults and model keys do nothing in a replay
        await pilot.press("k", "m")
        assert isinstance(app.screen, type(app.screen)) and not isinstance(app.screen, ModelScreen)
        await pilot.press("q")


def _children(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _run_in_pty(stop: str) -> None:
    """Run the real `serverscope` in a pseudo-terminal; stop it with `stop`; no pid left."""
    exe = str(ROOT / ".venv" / "bin" / "serverscope")
    if not os.path.exists(exe):
        pytest.skip("no .venv/bin/serverscope")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a 100x30 terminal
        os.environ["COLUMNS"], os.environ["LINES"] = "100", "30"
        os.execv(exe, [exe, "--workers", "2", "--clients", "4", "--duration", "30"])
    try:
        deadline = time.monotonic() + 15
        kids: list[int] = []
        output = b""
        while time.monotonic() < deadline:
            try:
                import select

                if select.select([fd], [], [], 0.1)[0]:
                    output += os.read(fd, 65536)
            except OSError:
                break
            kids = _children(pid)
            if len(kids) >= 4 and b"many_accepts" in output:  # root, 2 workers, generator
                break
        assert len(kids) >= 4, f"the lab did not start: {output[-500:]!r}"
        time.sleep(0.5)
        kids = sorted(set(kids) | set(_children(pid)))
        if stop == "q":
            os.write(fd, b"q")
        else:  # the terminal closes: the kernel hangs up its session (SIGHUP)
            os.close(fd)
            fd = -1
        deadline = time.monotonic() + 15
        done = 0
        while time.monotonic() < deadline:
            try:
                while fd >= 0 and select.select([fd], [], [], 0.05)[0]:
                    os.read(fd, 65536)
            except OSError:
                pass
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        assert done == pid, "serverscope did not exit"
        assert_all_gone(kids, timeout=10)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        if fd >= 0:
            os.close(fd)


@pytest.mark.slow
def test_real_command_quits_on_q() -> None:
    _run_in_pty("q")


@pytest.mark.slow
def test_real_command_terminal_closed_sighup() -> None:
    _run_in_pty("hup")


@aio
async def test_client_panel_shows_the_waiting_clients_in_red_and_counts_them_in_p99() -> None:
    """prefork starvation: 46 requests waiting, the oldest 7.2 s. The panel used to show
    only the completed requests' p99 and a dim `in flight` count."""
    from rich.text import Text

    from tui.quiet_static import QuietStatic

    app = ServerscopeApp(
        ReplayScreen(ReplaySource(tui_scenarios.prefork_keepalive_idle(), start_at=-1))
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.lab.last is not None, what="the first frame")
        await pilot.pause(0.1)
        body = app.query_one("#client-body", QuietStatic).content
        assert isinstance(body, Text)
        line = next((ln for ln in body.plain.splitlines() if ln.startswith("waiting")), "")
        assert line == "waiting 46, oldest 7.2 s", line
        start = body.plain.index("46, oldest")
        assert any("red" in str(sp.style) and sp.start <= start < sp.end for sp in body.spans), (
            body.spans
        )
        c = app.lab.last.client  # type: ignore[union-attr]
        assert c is not None and c.latency_all_ms.p99 > c.latency_ms.p99
        assert f"p99 {c.latency_all_ms.p99:.0f} ms" in body.plain  # the p99 with the waiting


def test_an_index_resting_on_too_few_events_is_shown_but_not_coloured() -> None:
    """event under keepalive-idle: 1 connection held among 75 threads reads Jain 0.01 and
    top share 100%, which were drawn in red under a banner saying no phenomenon."""
    import synthetic
    from tui.frame import Frame
    from tui.imbalance_panel import _row

    snaps = synthetic.series(20, workers=75, threads=True, connections=[1] + [0] * 74)
    frame = Frame(snaps[-1], snaps, None, frozenset())
    _, jain, top, judged, hot, *_ = _row(frame, "connections", "conns", 20)
    assert jain is not None and jain < 0.1 and top == 1.0  # the true figures, shown
    assert not judged and not hot
    many = synthetic.series(20, workers=4, connections=[10, 7, 3, 0])
    _, _, _, judged, hot, *_ = _row(
        Frame(many[-1], many, None, frozenset()), "connections", "c", 20
    )
    assert judged and hot


@aio
async def test_the_model_chooser_offers_the_originals_and_runs_one_under_the_monitor() -> None:
    """The seed's originals are in the chooser; picking c:proc_spawn with 4 workers runs the
    real C server, watched from outside (attach sampler), and q leaves no process."""
    import shutil

    from tui.screens.model import model_options

    assert {"c:single", "node:many_accepts", "go:server", "apache:event"} <= {
        value for _, value in model_options()
    }
    if shutil.which("gcc") is None:
        pytest.skip("c:proc_spawn needs gcc: apt-get install gcc")
    app, source = live_app("many_accepts", workers=2)
    seen: set[int] = set()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.lab.last is not None, 15, "the first frame")
        seen |= set(source.pids())
        await pilot.press("m")
        screen = app.screen
        assert isinstance(screen, ModelScreen)
        screen.query_one("#model-select", Select).value = "c:proc_spawn"
        await wait_for(pilot, lambda: screen.knobs_for == "c:proc_spawn", what="its knobs")
        screen.query_one("#knob-workers", Input).value = "4"
        screen.query_one("#knob-workers", Input).focus()
        await pilot.press("enter")

        def running_the_original() -> bool:
            snap = app.lab.last
            return (
                snap is not None
                and snap.model is not None
                and len([w for w in snap.live_workers if w.is_worker]) == 4
                and source.session.config.model == "c:proc_spawn"
            )

        await wait_for(pilot, running_the_original, 20, "c:proc_spawn's 4 workers on screen")
        seen |= set(source.pids())
        await pilot.press("q")
        await wait_for(pilot, lambda: source.closed, 15, "the session to close")
    assert_all_gone(sorted(seen), timeout=10)
