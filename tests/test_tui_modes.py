"""Each TUI mode is its own screen: the keys its footer offers (in the order they had when
one App class gated them by mode), and the palette entries only a live lab has."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import synthetic
import tui_scenarios
from conftest import assert_all_gone
from lab.catalogue import SCENARIOS
from lab.player import DemoPlayer
from lab.session import Session
from servers.config import ServerConfig
from tui.app import ServerscopeApp
from tui.screens.demo import DemoScreen
from tui.screens.lab import LabScreen, sampling_cost
from tui.screens.live import LiveScreen
from tui.screens.replay import ReplayScreen
from tui.source import LiveSource, ReplaySource

LIVE_KEYS = [
    "q",
    "enter",
    "d",
    "m",
    "l",
    "p",
    "k",
    "b",
    "plus",
    "equals_sign",
    "r",
    "s",
    "space",
    "f",
]


def footer_and_palette(screen: LabScreen, source: LiveSource | None = None) -> tuple:  # type: ignore[type-arg]
    """The keys the footer shows, the palette's titles, and the pids seen (live)."""
    app = ServerscopeApp(screen)
    pids: list[int] = []

    async def go() -> tuple[list[str], list[str]]:
        async with app.run_test(size=(120, 36)) as pilot:
            deadline = time.monotonic() + 15
            while screen.last is None:
                assert time.monotonic() < deadline, "no frame in 15 s"
                await asyncio.sleep(0.05)
            if source is not None:
                pids.extend(source.pids())
            active = app.screen.active_bindings
            keys = [key for key, b in active.items() if b.binding.show]
            palette = [c.title for c in app.get_system_commands(app.screen)]
            await pilot.press("q")
            if source is not None:
                while not source.closed:
                    assert time.monotonic() < deadline + 15, "the session did not close"
                    await asyncio.sleep(0.05)
        return keys, palette

    keys, palette = asyncio.run(go())
    assert_all_gone(pids)
    return keys, palette


def test_a_replay_offers_play_and_seek_and_no_lab_controls() -> None:
    snaps = tui_scenarios.many_accepts_burst()
    screen = ReplayScreen(ReplaySource(snaps, name="t", start_at=-1, playing=False))
    keys, palette = footer_and_palette(screen)
    assert keys == ["q", "enter", "d", "space", "left_square_bracket", "right_square_bracket"]
    assert not any(t.startswith(("Model:", "Load:", "Kill")) for t in palette), palette


def test_the_live_lab_offers_model_load_faults_and_its_palette() -> None:
    source = LiveSource(Session(ServerConfig(model="many_accepts", workers=2), None))
    keys, palette = footer_and_palette(LiveScreen(source), source)
    assert keys == LIVE_KEYS
    assert "Model: prefork" in palette and "Kill the selected worker" in palette


def test_a_demo_adds_next_step_to_the_live_keys() -> None:
    scenario = SCENARIOS["master"]
    step = scenario.steps[0]
    source = LiveSource(Session(step.config, DemoPlayer(scenario).level(step)))
    keys, _palette = footer_and_palette(DemoScreen(source, scenario), source)
    assert keys == [*LIVE_KEYS, "n"]


def test_the_header_shows_what_sampling_costs_or_nothing():
    """Snapshot.cost_ms (the sampler's and analyser's CPU per sample) is shown in the
    header as a share of one core over the interval it covers; unmeasured, it is absent."""
    snap = dataclasses.replace(synthetic.snapshot(workers=2, interval_s=0.25), cost_ms=7.5)
    assert sampling_cost(snap) == "sampling 3% CPU"  # 7.5 ms of 250 ms
    assert sampling_cost(dataclasses.replace(snap, interval_s=1.0)) == "sampling 1% CPU"
    assert sampling_cost(dataclasses.replace(snap, cost_ms=None)) is None
    assert sampling_cost(dataclasses.replace(snap, interval_s=None)) is None  # first sample
    assert sampling_cost(None) is None
