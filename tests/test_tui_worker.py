"""The worker detail (Enter on the selected worker): its request, client and connections,
whole at 120x36 and 80x24, from synthetic snapshots; ages from each frame's own time."""

from __future__ import annotations

import asyncio

import pytest

import synthetic
from test_tui_truth import screen_text
from tui.app import ServerscopeApp
from tui.screens.replay import ReplayScreen
from tui.screens.worker import WorkerScreen
from tui.source import ReplaySource
from values.current import Current, Peer, Peers, Via
from values.snapshot import Snapshot

SIZES = [(120, 36), (80, 24)]
END = 1000.0 + 19 * 0.25  # the last frame's time (synthetic.series: 20 frames from 1000)
HELD = Current(
    Via.SCOREBOARD, 1, "GET /held?who=first HTTP/1.1", "127.0.0.1:51234", END - 12, END - 12.4
)


def _lab() -> list[Snapshot]:
    """prefork: worker 0 reading a request for 12 s, the others waiting."""
    return synthetic.series(
        20,
        model="prefork",
        workers=4,
        states=["reading", "waiting"],
        connections=[1, 0, 0, 0],
        current=[HELD, Current(Via.SCOREBOARD, 0)],
    )


def _attached() -> list[Snapshot]:
    """nginx's worker holding 10 connections: 8 listed, the oldest first."""
    listed = [
        Peer(
            f"127.0.0.1:{51000 + i}", "ESTAB", 0, 0, 0, 0, END - 30 + i, END - 30 + i, END - 30 + i
        )
        for i in range(6)
    ]
    listed.append(Peer("127.0.0.1:51234", "ESTAB", 0, 0, 17, 0, END - 12, END - 20, END - 20))
    listed.append(Peer("[::1]:40000", "ESTAB", 0, 0, 40, 150, END - 4.2 - 1, END - 4.2, END - 5))
    [*_, last] = synthetic.series(
        20,
        model="attached",
        workers=1,
        states=["unknown"],
        connections=[10],
        peers=[Peers(tuple(listed), 10)],
    )
    attached = [
        Snapshot.from_dict(
            s.to_dict() | {"workers": [w | {"slot": None} for w in s.to_dict()["workers"]]}
        )
        for s in [last]
    ]
    return attached


def _open(snaps: list[Snapshot], size: tuple[int, int], check) -> None:
    async def go() -> None:
        lab = ReplayScreen(ReplaySource(snaps, name="t", start_at=-1, playing=False))
        app = ServerscopeApp(lab)
        async with app.run_test(size=size) as pilot:
            for _ in range(200):
                if lab.last is not None:
                    break
                await pilot.pause(0.02)
            await pilot.press("enter")
            for _ in range(100):
                if isinstance(app.screen, WorkerScreen):
                    break
                await pilot.pause(0.02)
            await check(app, lab, pilot)

    asyncio.run(go())


async def _shows(app: ServerscopeApp, pilot, *lines: str) -> list[str]:
    """Until every one of `lines` is on a row of the screen whole (up to 5 s)."""
    for _ in range(100):
        rows = screen_text(app)
        if all(any(line in row for row in rows) for line in lines):
            return rows
        await pilot.pause(0.05)
    raise AssertionError(f"not all of {lines} on screen:\n" + "\n".join(screen_text(app)))


@pytest.mark.parametrize("size", SIZES)
def test_enter_shows_the_selected_workers_request_client_and_its_growing_age(size) -> None:
    async def check(app, lab, pilot) -> None:
        await _shows(
            app,
            pilot,
            "worker 0 · pid 1001 · R reading for 1.0 s · 1 connection",
            "request in progress: GET /held?who=first HTTP/1.1, began 12 s ago",
            "client: 127.0.0.1:51234, connected 12 s ago",
            "from its scoreboard slot, written by the worker",
        )
        lab.action_step(-4)  # a frame 1 s earlier: the detail is drawn again, 1 s younger
        await _shows(app, pilot, "GET /held?who=first HTTP/1.1, began 11 s ago")
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, WorkerScreen) and lab.detail is None

    _open(_lab(), size, check)


@pytest.mark.parametrize("size", SIZES)
def test_an_attached_workers_connections_are_listed_with_what_each_did(size) -> None:
    async def check(app, lab, pilot) -> None:
        await _shows(
            app,
            pilot,
            "pid 1001 · ? unknown for 1.0 s · 10 connections",
            "request and client: unknown",
            "127.0.0.1:51000  silent since connect, 30 s",
            "127.0.0.1:51234  mid-request, 17 bytes in, 12 s ago",
            "[::1]:40000      idle 4.2 s after a response",
            "+ 2 more (not listed)",
        )

    _open(_attached(), size, check)
