"""A worker's stack in the TUI: `d` reads it in a thread (the UI keeps drawing) and the
worker detail shows it; a stack taken by itself when the worker was stuck shows there
too, in a replay as it was recorded; a replay's `d` reads no process."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import synthetic
from test_tui_worker import END, HELD, _lab, _shows
from tui.app import ServerscopeApp
from tui.screens.replay import ReplayScreen
from tui.screens.worker import WorkerScreen
from tui.source import ReplaySource
from values.snapshot import Snapshot
from values.stackvalues import Frame, StackCapture, ThreadStack
from values.stuck import Episode, StuckCapture

FRAMES = (Frame("app", "/srv/wsgiapp.py", 7, "wsgiapp"), Frame("handle", "/g/sync.py", 178))


def _cap(pid: int) -> StackCapture:
    t = ThreadStack(pid, "MainThread", "idle", FRAMES)
    return StackCapture(pid, None, "python", "libpython", "py-spy dump --nonblocking", (t,), 0.0)


class LivelySource(ReplaySource):
    """Recorded snapshots, but `d` reads a 'process' (after `release`), as a live one."""

    live_stacks = True

    def __init__(self, snaps: list[Snapshot]) -> None:
        super().__init__(snaps, name="t", start_at=-1, playing=False)
        self.release = threading.Event()
        self.asked: list[tuple[int, int]] = []

    def stack(self, pid: int, tid: int) -> StackCapture | None:
        self.asked.append((pid, tid))
        self.release.wait(10)
        return _cap(pid)


def _run(source: ReplaySource, check) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        lab = ReplayScreen(source)
        app = ServerscopeApp(lab)
        async with app.run_test(size=(120, 36)) as pilot:
            for _ in range(200):
                if lab.last is not None:
                    break
                await pilot.pause(0.02)
            await check(app, lab, pilot)

    asyncio.run(go())


def test_d_reads_the_stack_in_a_thread_and_the_detail_shows_it() -> None:
    source = LivelySource(_lab())

    async def check(app, lab, pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("d")
        await _shows(app, pilot, "stack: reading it... (taken with d")
        assert isinstance(app.screen, WorkerScreen) and source.asked == [(1001, 1001)]
        lab.action_step(-1)  # the UI still draws while the capture waits
        await _shows(app, pilot, "R reading for 1.0 s")
        source.release.set()
        await _shows(
            app,
            pilot,
            "stack (taken with d,",
            "read with py-spy dump --nonblocking in 0 ms; the target was not stopped",
            "thread 1001 'MainThread' [idle]",
            "    app  /srv/wsgiapp.py:7",
        )

    _run(source, check)


def test_a_stack_taken_by_itself_shows_in_the_detail_of_a_replay_and_d_reads_nothing() -> None:
    snaps = _lab()
    e = Episode("worker 0", 1001, 1001, 1, 0, "request", "reading", END - 12, True)
    e = dataclasses.replace(e, request=HELD.request, client=HELD.client)
    at = snaps[10].time - 0.05  # 2.3 s before the last frame; 9.7 s into the request
    snaps[10] = dataclasses.replace(snaps[10], stuck=(StuckCapture(e, at, _cap(1001)),))
    source = ReplaySource(snaps, name="t", start_at=-1, playing=False)

    async def check(app, lab, pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("d")  # a recording: no process to read, the recorded one shown
        await _shows(
            app,
            pilot,
            "stack (taken by itself: stuck in one request for 9.7 s, 2.3 s ago)",
            "stands in `app` (wsgiapp.py:7) <- `handle` (sync.py:178)",
            "    app  /srv/wsgiapp.py:7",
        )
        lab.action_step(-12)  # before the capture: not there yet
        await _shows(app, pilot, "stack: not taken (none was taken by itself while recording)")

    _run(source, check)


def test_no_capture_no_claim() -> None:
    snaps = synthetic.series(4, workers=2, states=["working", "waiting"])
    assert all(s.stuck == () for s in snaps)
