"""The imbalance panel's history header ("Jain, last N s") says how long the sparkline it
heads covers, from the snapshots' times. Seen: `serverscope replay` of a `fix` recording
read "Jain, last 0 s" over a full sparkline: the span was the count of points times the
last snapshot's interval, and the last one (the run's end) was 18 ms after the one
before it."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import synthetic
from tui.app import ServerscopeApp
from tui.imbalance_panel import ImbalancePanel
from tui.screens.replay import ReplayScreen
from tui.source import ReplaySource
from values.snapshot import Snapshot


def _header(snaps: list[Snapshot]) -> str:
    app = ServerscopeApp(ReplayScreen(ReplaySource(snaps, name="t", start_at=-1, playing=False)))

    async def go() -> str:
        async with app.run_test(size=(120, 36)) as pilot:
            deadline = time.monotonic() + 15
            while app.lab.last is None:
                assert time.monotonic() < deadline, "no frame in 15 s"
                await asyncio.sleep(0.05)
            await pilot.pause(0.3)
            panel = app.query_one(ImbalancePanel)
            lines = panel.render_lines(panel.region.reset_offset)  # type: ignore[attr-defined]
            return "".join(seg.text for seg in lines[1])  # under the border: the header

    return asyncio.run(go())


def test_the_history_span_comes_from_the_snapshots_times() -> None:
    snaps = synthetic.series(40, period=0.25, accepts=[5, 1, 1, 1])
    last = snaps[-1]
    end = dataclasses.replace(last, time=snaps[-2].time + 0.02, interval_s=0.02)
    header = _header([*snaps[:-1], end])
    assert "Jain, last 0 s" not in header, header
    assert "Jain, last 4 s" in header or "Jain, last 3 s" in header, header
