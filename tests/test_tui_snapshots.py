"""Snapshot tests of the main screen, fed by synthetic snapshots (deterministic: no clock,
no server). Update with `pytest tests/test_tui_snapshots.py --snapshot-update`, then look
at the SVGs in tests/__snapshots__/."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.pilot import Pilot

import tui_scenarios
from servers.config import ServerConfig
from test_tui_truth import screen_text
from tui.app import ServerscopeApp
from tui.screens.model import ModelScreen
from tui.screens.replay import ReplayScreen
from tui.source import ReplaySource
from values.snapshot import Snapshot

SCENARIOS: dict[str, Callable[[], list[Snapshot]]] = {
    "many_accepts_burst": tui_scenarios.many_accepts_burst,
    "prefork_keepalive_idle": tui_scenarios.prefork_keepalive_idle,
    "event_keepalive_idle": tui_scenarios.event_keepalive_idle,
    "prefork_starving_phases": tui_scenarios.prefork_starving_phases,
}
SIZES = {"120x36": (120, 36), "80x24": (80, 24), "200x50": (200, 50)}
# (the snapshot tests are the suite's dearest per test: 200x50 for one scenario, and the demo)
CASES = [
    (n, s) for n in SCENARIOS for s in SIZES if s != "200x50" or n == "prefork_starving_phases"
]


def make_app(name: str) -> ServerscopeApp:
    snaps = SCENARIOS[name]()
    return ServerscopeApp(ReplayScreen(ReplaySource(snaps, name=name, start_at=-1, playing=False)))


async def drawn(pilot: Pilot) -> None:
    """Wait until the app has drawn its first frame and the layout has settled (the
    height shared between the narration and the measures takes a frame or two)."""
    app = pilot.app
    assert isinstance(app, ServerscopeApp)
    for _ in range(200):
        if app.lab.last is not None:
            break
        await pilot.pause(0.02)
    rows: list[str] = []
    for _ in range(20):
        app.lab.redraw()
        app.lab.tick()
        await pilot.pause()
        now = screen_text(app)
        if now == rows:
            break
        rows = now
    await pilot.pause(0.1)


@pytest.mark.parametrize(("name", "size"), CASES)
def test_main_screen(snap_compare, name: str, size: str) -> None:
    assert snap_compare(make_app(name), terminal_size=SIZES[size], run_before=drawn)


@pytest.mark.parametrize("size", SIZES)
def test_demo_screen(snap_compare, size: str) -> None:
    """demo starvation, step 1, on prefork's starving snapshots: the narration pages its
    bullets and leaves the evidence its room (the queue, the waiting clients)."""
    from lab.catalogue import SCENARIOS as DEMOS
    from test_tui_evidence import NarratedReplay

    snaps = tui_scenarios.demo_starvation_prefork()
    source = ReplaySource(snaps, name="demo", start_at=-1, playing=False)
    app = ServerscopeApp(NarratedReplay(source, DEMOS["starvation"], 0, set()))
    assert snap_compare(app, terminal_size=SIZES[size], run_before=drawn)


@pytest.mark.parametrize("size", ("120x36", "80x24"))
def test_model_chooser(snap_compare, size: str) -> None:
    """The model chooser for prefork: only prefork's knobs, fitting 80x24."""

    async def open_chooser(pilot: Pilot) -> None:
        await drawn(pilot)
        await pilot.app.push_screen(ModelScreen(ServerConfig(model="prefork")))
        await pilot.pause(0.2)

    app = make_app("many_accepts_burst")
    assert snap_compare(app, terminal_size=SIZES[size], run_before=open_chooser)


class _RecordedAttach(ReplaySource):
    """An attach recording fed to the attach screen (the feed's `ended`: still there)."""

    ended: str | None = None


@pytest.mark.parametrize("size", ("120x36", "80x24"))
def test_attach_screen(snap_compare, size: str) -> None:
    """nginx with reuseport, one worker SIGSTOPped: drawn stopped, its queue's owner named,
    the subtitle naming server, root pid and accepts method, no load of ours."""
    from tui.screens.attach import AttachScreen

    snaps = tui_scenarios.attached_nginx_reuseport_stopped()
    source = _RecordedAttach(snaps, name="attach", start_at=-1, playing=False)
    app = ServerscopeApp(AttachScreen(source))  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=SIZES[size], run_before=drawn)
