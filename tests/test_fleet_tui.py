"""The fleet screen in Textual's pilot: it opens, lists the fleet worst first (read through
the real reader, from fleetfake's Prometheus answers), says why the highlighted server
ranks where it does, opens a server's workers over time, goes back, and quits."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey

from fleetfake import five_servers
from tui.fleet_app import FleetApp
from tui.screens.fleet import FleetScreen, ServerScreen
from values.fleet_format import COLUMNS

pytestmark = pytest.mark.timeout(60)


def aio(fn):  # type: ignore[no-untyped-def]
    """Run an async test with asyncio.run (no pytest-asyncio needed)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        return asyncio.run(fn(*args, **kwargs))

    return run


async def _until(pilot, cond, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _column(table: DataTable, name: str) -> list[str]:
    return [str(table.get_cell_at((r, COLUMNS.index(name)))) for r in range(table.row_count)]


@aio
async def test_the_fleet_screen_opens_lists_selects_and_quits() -> None:
    app = FleetApp(five_servers().reader(), period=60)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        table = screen.query_one(DataTable)
        await _until(pilot, lambda: table.row_count == 5, "the five servers")
        assert _column(table, "server") == [
            "apache-prefork",
            "gunicorn-sync",
            "many_accepts",
            "node-cluster",
            "nginx",
        ]
        assert _column(table, "workers") == ["4", "?", "4", "2", "2"]
        assert _column(table, "throttled") == [
            "unknown",
            "unknown",
            "unknown",
            "50% of 0.5 core",
            "unknown",
        ]
        assert _column(table, "diagnoses")[:2] == ["starvation", "not scraped (up 0)"]
        head = str(screen.query_one("#fleet-head", Static).render())
        assert "5 servers" in head and "worst first" in head
        why = screen.query_one("#fleet-why", Static)
        assert "critical starvation" in str(why.render())
        want = {"Workers", "Refresh", "Quit"}  # the table's own Enter hid Workers, q was hidden
        await _until(
            pilot, lambda: want <= {k.description for k in screen.query(FooterKey)}, "keys"
        )

        await pilot.press("down")
        await _until(pilot, lambda: "not scraped" in str(why.render()), "the second row's why")

        await pilot.press("down", "enter")
        await _until(pilot, lambda: isinstance(app.screen, ServerScreen), "the server screen")
        server = app.screen
        assert isinstance(server, ServerScreen) and server.server.id.server == "many_accepts"
        workers = server.query_one(DataTable)
        await _until(pilot, lambda: workers.row_count == 4, "its four workers' history")
        conns = [str(workers.get_cell_at((r, 2))) for r in range(4)]
        assert conns == ["16", "1", "2", "1"]
        line = str(workers.get_cell_at((0, 3)))
        assert line.strip() and line[-1] == "█"  # the busiest worker, at the top of the scale

        await pilot.press("escape")
        await _until(pilot, lambda: isinstance(app.screen, FleetScreen), "the list again")
        await pilot.press("q")
    assert app.return_code in (0, None)


@aio
async def test_a_failed_read_is_one_line_and_the_last_figures_stay() -> None:
    fake = five_servers()
    app = FleetApp(fake.reader(), period=60)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        table = screen.query_one(DataTable)
        await _until(pilot, lambda: table.row_count == 5, "the five servers")
        fake.down = True
        await pilot.press("r")
        head = screen.query_one("#fleet-head", Static)
        await _until(pilot, lambda: "last read failed" in str(head.render()), "the failure")
        assert "connection refused" in str(head.render())
        assert table.row_count == 5  # the last good figures stay
