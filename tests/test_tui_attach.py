"""The attach mode of the TUI (`serverscope attach --port P`): the lab's monitor on a real
server serverscope did not start. A pilot run on nginx with reuseport (a SIGSTOPped worker
drawn stopped, each queue's owner named, q leaving nginx running and nothing of ours), the
real command in a pseudo-terminal, and what is unknown drawn as unknown."""

from __future__ import annotations

import os
import pty
import select
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

import tui_scenarios
from conftest import assert_all_gone
from lab.attach import Attachment
from loadgen.levels import PRESETS
from realservers import real_server  # noqa: F401 - the fixture
from test_tui_pilot import aio, wait_for
from tui.app import ServerscopeApp
from tui.backlog_panel import BacklogPanel
from tui.client_panel import ClientPanel
from tui.diagnosis_banner import DiagnosisBanner
from tui.frame import Frame
from tui.scoreboard_grid import summary
from tui.scoreboard_legend import ScoreboardLegend
from tui.screens.attach import AttachScreen
from tui.screens.replay import ReplayScreen
from tui.source import LiveSource, ReplaySource
from tui.worker_table import WorkerTable
from values.recording import read_recording
from values.snapshot import WorkerState

ROOT = Path(__file__).resolve().parents[1]


def _ours() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _plain(widget: object) -> str:
    shown = getattr(widget, "_shown", None)
    return shown[0] if isinstance(shown, tuple) else str(shown)


@aio
async def test_attach_screen_on_nginx_reuseport_shows_a_stopped_worker_and_queue_owners(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("nginx", workers=2, reuseport=True)
    workers = srv.children()
    before = _ours()
    attachment = Attachment.open(port=srv.port, status_url=None, exact_accepts=False)
    runner = attachment.start_load(PRESETS["burst"].with_(clients=4, duration=20))
    assert runner.pid is not None
    feed = LiveSource(attachment)
    assert feed.pids() == [runner.pid]
    ours = _ours() - before  # the load generator, bpftrace when root
    assert runner.pid in ours
    victim = workers[0]
    app = ServerscopeApp(AttachScreen(feed))
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = app.lab
            await wait_for(pilot, lambda: screen.last is not None, 20, "a first frame")
            assert "root pid" in app.sub_title and "accepts" in app.sub_title
            assert "nginx" in app.sub_title, app.sub_title
            os.kill(victim, signal.SIGSTOP)

            def stopped() -> bool:
                snap = screen.last
                return snap is not None and any(
                    w.pid == victim and w.state == WorkerState.STOPPED for w in snap.workers
                )

            await wait_for(pilot, stopped, 10, "the stopped worker")
            await pilot.pause(0.3)
            table = app.query_one(WorkerTable)
            rows = {w.pid: table._row_values(i) for i, w in enumerate(table._workers)}
            assert any("stopped" in map(str, v) for p, v in rows.items() if p == victim), rows
            backlog = _plain(app.query_one(BacklogPanel))
            for pid in workers:
                assert f"pid {pid}" in backlog, backlog  # each reuseport queue's owner
            assert len(screen.last.listeners) == 2
            banner = _plain(app.query_one(DiagnosisBanner))
            assert "attaching" not in banner and (
                "phenomenon" in banner or "⚠" in banner or "✖" in banner or "i " in banner
            ), banner
            await pilot.press("f")  # no faults: a notice only
            assert _alive(victim)
            await pilot.press("q")
            await wait_for(pilot, lambda: feed.closed, 20, "the feed closed")
    finally:
        os.kill(victim, signal.SIGCONT)
        feed.close()
    assert all(_alive(p) for p in [srv.root, *workers]), "the attached server must keep running"
    assert_all_gone(sorted(ours), timeout=10)


@aio
async def test_a_replay_of_an_attach_recording_says_unknown_not_0_busy_and_offers_no_load() -> None:
    """It said "8 workers · 0 busy · 0 idle" and "l chooses a load" (replay has no l)."""
    snap = tui_scenarios.attached_unknown()
    assert "? busy · ? idle" in summary(Frame(snap), 200)
    screen = ReplayScreen(ReplaySource([snap], playing=False))
    app = ServerscopeApp(screen)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: screen.last is not None, 10, "a frame")
        await pilot.pause(0.2)
        title = str(app.query_one("#scoreboard-panel").border_title)
        assert "8 workers · ? busy · ? idle" in title and "0 busy" not in title, title
        banner = _plain(app.query_one(DiagnosisBanner))
        assert "busy unknown" in banner and "0/8" not in banner, banner
        client = " ".join(_plain(w) for w in app.query_one(ClientPanel).children)
        assert "no load in this recording" in client and "l chooses" not in client, client
        assert "stopped" in str(app.query_one(ScoreboardLegend).render())  # attach recording
    assert "--load PRESET drives one" in AttachScreen.no_load(None)[1]  # type: ignore[arg-type]
    assert "l chooses" in ClientPanel.no_load[1]  # the live lab keeps its hint


def test_thread_rows_are_folded_under_their_process_and_t_unfolds_them() -> None:
    snap = tui_scenarios.attached_threads()
    threads = [w for w in snap.workers if w.folded]
    assert threads

    async def run() -> None:
        feed = ReplaySource([snap], playing=False)
        screen = ReplayScreen(feed)
        app = ServerscopeApp(screen)
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: screen.last is not None, 10, "a frame")
            table = app.query_one(WorkerTable)
            assert not any(w.folded for w in table._workers)
            proc = next(w for w in table._workers if w.pid == threads[0].pid)
            i = table._workers.index(proc)
            assert f"{sum(t.pid == proc.pid for t in threads)}t" in table._row_values(i)
            screen.threads = True
            screen.redraw()
            assert sum(w.folded for w in table._workers) == len(threads)

    import asyncio

    asyncio.run(run())


@pytest.mark.slow
def test_real_attach_command_with_a_load_opens_the_monitor_and_quits_on_q(
    real_server,  # noqa: F811
    tmp_path: Path,
) -> None:
    srv = real_server("nginx", workers=2)
    exe = str(ROOT / ".venv" / "bin" / "serverscope")
    if not os.path.exists(exe):
        pytest.skip("no .venv/bin/serverscope")
    server_pids = srv.pids()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["COLUMNS"], os.environ["LINES"] = "100", "30"
        rec = str(tmp_path / "attach.jsonl")
        args = ["attach", "--port", str(srv.port), "--status-url", "none", "--load", "burst"]
        os.execv(exe, [exe, *args, "--record", rec])
    try:
        output = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and b"root pid" not in output:
            try:
                if select.select([fd], [], [], 0.1)[0]:
                    output += os.read(fd, 65536)
            except OSError:
                break
        assert b"root pid" in output, output[-500:]
        kids = [p.pid for p in psutil.Process(pid).children(recursive=True)]
        assert kids, "--load burst: the load generator is a child of ours"
        os.write(fd, b"q")
        done = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                while select.select([fd], [], [], 0.05)[0]:
                    os.read(fd, 65536)
            except OSError:
                pass
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        assert done == pid, "serverscope attach did not exit on q"
        assert os.waitstatus_to_exitcode(status) == 0
        assert_all_gone(kids, timeout=10)
        assert all(_alive(p) for p in server_pids), "the attached server must keep running"
        snaps = list(read_recording(tmp_path / "attach.jsonl"))
        assert snaps and snaps[-1].model is not None
        assert snaps[-1].model.accepts_method in ("exact (eBPF)", "estimate")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


@aio
async def test_attach_screen_folds_gunicorn_gthread_threads_and_t_unfolds_them(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("gunicorn", worker_class="gthread", workers=2, threads=4)
    workers = srv.children()
    feed = LiveSource(Attachment.open(port=srv.port, status_url=None, exact_accepts=False))
    app = ServerscopeApp(AttachScreen(feed))
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            screen = app.lab

            def threads_seen() -> bool:
                snap = screen.last
                return snap is not None and any(w.folded for w in snap.workers)

            await wait_for(pilot, threads_seen, 20, "thread rows")
            await pilot.pause(0.3)
            await pilot.press("space")  # freeze: the table and screen.last stay as drawn
            await pilot.pause(0.3)
            table = app.query_one(WorkerTable)
            assert not any(w.is_thread for w in table._workers)
            counts = {
                w.pid: table._row_values(i)[0]
                for i, w in enumerate(table._workers)
                if w.pid in workers
            }
            # (gthread starts its pool threads lazily: a process may have none yet)
            rows = Counter(w.pid for w in screen.last.workers if w.folded)
            assert rows and counts == {p: f"{rows[p]}t" if rows[p] else "-" for p in counts}
            await pilot.press("space", "t")
            await wait_for(
                pilot, lambda: any(w.is_thread for w in table._workers), 5, "unfolded rows"
            )
            assert "threads unfolded" in app.sub_title
            await pilot.press("q")
            await wait_for(pilot, lambda: feed.closed, 20, "the feed closed")
    finally:
        feed.close()
    assert all(_alive(p) for p in srv.pids()), "the attached server must keep running"
