"""The evidence fits the screen: every demo step's figures (what its narration tells the
audience to watch) are on screen, whole, at 120x36, and its key figure at 80x24; the
narration drops no bullet silently. Drawn from synthetic snapshots shaped like each step
live (tui_scenarios.demo_*), on the replay screen with the demo's narration above it.

When a demo gains a step, EVIDENCE needs its entry: the test says which is missing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from textual.pilot import Pilot
from textual.widget import Widget

import tui_scenarios
from lab.catalogue import SCENARIOS
from lab.scenarios import Scenario
from test_tui_truth import screen_text
from tui.app import ServerscopeApp
from tui.narration_panel import NarrationPanel
from tui.screens.replay import ReplayScreen
from tui.source import ReplaySource
from values.snapshot import Snapshot


@dataclass(frozen=True)
class Sight:
    """A figure the narration points at: the panel it is in, what it reads (a regex), and
    whether it is the step's key figure (kept even at 80x24)."""

    panel: str  # a widget id: banner, scoreboard-panel, workers, imbalance, backlog, ...
    reads: str
    key: bool = False


@dataclass(frozen=True)
class Evidence:
    snapshots: Callable[[], list[Snapshot]]
    sights: tuple[Sight, ...]
    paused_slot: int | None = None  # the step pauses this worker (the lab draws it so)


EVIDENCE: dict[tuple[str, int], Evidence] = {
    ("remedy", 0): Evidence(
        tui_scenarios.demo_remedy_all,
        (
            Sight("imbalance", r"accepts\s+0\.25\s+100% w0", key=True),
            Sight("banner", r"accept skew: worker 0 took 100% of accepts", key=True),
        ),
    ),
    ("remedy", 1): Evidence(
        tui_scenarios.demo_remedy_less_busy,
        (Sight("imbalance", r"accepts\s+0\.6\d\s+50% w0", key=True),),
    ),
    ("remedy", 2): Evidence(
        tui_scenarios.demo_remedy_reuseport,
        (Sight("imbalance", r"accepts\s+1\.00\s+25%", key=True),),
    ),
    ("skew", 0): Evidence(
        tui_scenarios.demo_skew_many_accepts,
        (
            Sight("imbalance", r"accepts\s+0\.27\s+96% w0", key=True),
            Sight("banner", r"accept skew: worker 0 took 96% of accepts", key=True),
            Sight("workers", r"2,880"),  # worker 0's accepts column
            Sight("scoreboard-panel", r"│ ____ "),  # the others idle at '_'
        ),
    ),
    ("skew", 1): Evidence(
        tui_scenarios.demo_skew_cluster,
        (
            Sight("imbalance", r"accepts\s+1\.00\s+25%", key=True),
            Sight("workers", r"760"),  # each worker's accepts, even
            Sight("scoreboard-panel", r"master 14% CPU"),
        ),
    ),
    ("starvation", 0): Evidence(
        tui_scenarios.demo_starvation_prefork,
        (
            Sight("backlog", r"44/511", key=True),
            Sight("client", r"waiting 46, oldest 7\.2 s", key=True),
            Sight("banner", r"starvation: new connections wait 7\.0 s", key=True),
            Sight("scoreboard-panel", r"KKKKKKKKKR"),
            Sight("client", r"latency p50 \S+ \S+\s+p99 \d+ ms"),
            Sight("client", r"connect p99 1\.20 ms"),
            Sight("phases", r"queue\s+4\.5s/7\.0s"),
        ),
    ),
    ("starvation", 1): Evidence(
        tui_scenarios.demo_starvation_event,
        (
            Sight("backlog", r" 0/511", key=True),
            Sight("banner", r"no phenomenon right now", key=True),
            Sight("scoreboard-panel", r"_{20}"),  # the worker threads idle, not K
        ),
    ),
    ("starvation", 2): Evidence(
        tui_scenarios.demo_starvation_slowloris,
        (
            Sight("backlog", r"40/511", key=True),
            Sight("banner", r"hold requests still arriving", key=True),
            Sight("scoreboard-panel", r"R{20}"),  # every child reading a request
            Sight("client", r"waiting 40, oldest 5\.2 s"),
        ),
    ),
    ("overflow", 0): Evidence(
        tui_scenarios.demo_overflow_single,
        (
            Sight("backlog", r"16/16", key=True),
            Sight("backlog", r"overflows? \+20", key=True),
            Sight("banner", r"accept queue overflow: port 8080 queue 16/16", key=True),
            Sight("client", r"connect p99 2040 ms", key=True),
            Sight("client", r"connects 1s \u00d7120\s+2s \u00d745\s+3s \u00d712"),
            Sight("client", r"waiting 100, oldest 3\.4 s"),
        ),
    ),
    ("hol", 0): Evidence(
        tui_scenarios.demo_hol_reuseport,
        (
            Sight("backlog", r"#0 .*120/511", key=True),
            Sight("banner", r"one reuseport queue backed up: worker 0 queue 120", key=True),
            Sight("backlog", r"#1 .* 0/511"),
            Sight("workers", r"⏸ STOP"),
            Sight("client", r"p99 \d{4} ms"),
            Sight("client", r"waiting 123, oldest 2\.9 s"),
        ),
        paused_slot=0,
    ),
    ("hol", 1): Evidence(
        tui_scenarios.demo_hol_many_accepts,
        (
            Sight("backlog", r":8080 .* 0/511", key=True),
            Sight("workers", r"⏸ STOP"),
            Sight("client", r"waiting 3, oldest 2\.1 s"),
        ),
        paused_slot=0,
    ),
    ("master", 0): Evidence(
        tui_scenarios.demo_master_storm,
        (
            Sight("scoreboard-panel", r"master 45% CPU", key=True),
            Sight("workers", r"2[01]%"),  # the workers' CPU column
        ),
    ),
    ("master", 1): Evidence(
        tui_scenarios.demo_master_saturated,
        (
            Sight("scoreboard-panel", r"master 99% CPU", key=True),
            Sight("banner", r"master bottleneck: cluster master 99% CPU", key=True),
            Sight("scoreboard-panel", r"│ ____ "),
            Sight("backlog", r"100/511"),
            Sight("client", r"connect p99 1030 ms"),
            Sight("client", r"latency p50 \S+ ms\s+p99 1\d{3} ms"),
        ),
    ),
    ("gil", 0): Evidence(
        tui_scenarios.demo_gil_goroutines,
        (
            Sight("banner", r"GIL cap: 2 threads share one core", key=True),
            Sight("workers", r"52%"),
            Sight("workers", r"47%"),
            Sight("scoreboard-panel", r"2 threads in 1 process"),
        ),
    ),
}
STEPS = [(name, i) for name, s in SCENARIOS.items() for i in range(len(s.steps))]


class NarratedReplay(ReplayScreen):
    """The replay screen with a demo step's narration above it, as the demo screen has."""

    def __init__(self, source: ReplaySource, scenario: Scenario, index: int, paused: set[int]):
        super().__init__(source)
        self.scenario, self.index, self.paused = scenario, index, frozenset(paused)

    def compose_top(self) -> Iterable[Widget]:
        yield NarrationPanel(id="narration")

    def paused_pids(self) -> frozenset[int]:
        return self.paused

    def tick(self) -> None:
        step = self.scenario.steps[self.index]
        last = self.index == len(self.scenario.steps) - 1
        self.query_one(NarrationPanel).show_step(self.scenario, self.index, step.seconds, last)

    def play(self, name: str, index: int) -> None:
        """Show another demo step (one app for all: an app's start costs ~0.4 s)."""
        ev = EVIDENCE[(name, index)]
        snaps = ev.snapshots()
        self.source = ReplaySource(snaps, name=name, start_at=-1, playing=False)
        self.source.period = 60.0  # the test draws when it wants: no redraw every 0.25 s
        self.scenario, self.index = SCENARIOS[name], index
        self.paused = frozenset(w.pid for w in snaps[-1].workers if w.slot == ev.paused_slot)
        self.selected, self.chosen, self.last = None, False, None
        self.draw(self.source.next())  # type: ignore[arg-type]


def panel_text(app: ServerscopeApp, rows: list[str], panel: str) -> str:
    r = app.screen.query_one(f"#{panel}").region
    return "\n".join(row[r.x : r.right] for row in rows[r.y : r.bottom])


Drawn = dict[tuple[int, int], tuple[list[str], dict[str, str]]]


def drawn_steps(
    steps: list[tuple[str, int]], sizes: list[tuple[int, int]]
) -> dict[tuple[str, int], Drawn]:
    """For each step, at each size: the screen's rows and each panel's text, once the
    layout settled (one app, the steps played in turn)."""
    first = EVIDENCE[steps[0]].snapshots()
    source = ReplaySource(first, name="demo", start_at=-1, playing=False)
    screen = NarratedReplay(source, SCENARIOS[steps[0][0]], steps[0][1], set())
    app = ServerscopeApp(screen)
    seen: dict[tuple[str, int], Drawn] = {}

    async def settled(pilot: Pilot) -> list[str]:
        rows: list[str] = []
        for _ in range(100):  # until two frames in a row look the same
            if screen.last is None:
                await pilot.pause(0.05)
                continue
            screen.redraw()  # (not waiting for the next period)
            screen.tick()
            await pilot.pause()
            now = screen_text(app)
            if now == rows:
                break
            rows = now
        return rows

    async def go() -> None:
        async with app.run_test(size=sizes[0]) as pilot:
            for step in steps:
                screen.play(*step)
                seen[step] = {}
                for size in sizes:
                    await pilot.resize_terminal(*size)
                    rows = await settled(pilot)
                    seen[step][size] = rows, {p: panel_text(app, rows, p) for p in PANELS}

    asyncio.run(go())
    return seen


PANELS = ("narration", "banner", "scoreboard-panel", "workers", "imbalance", "backlog")
PANELS += ("phases", "client", "events")


def test_every_demo_step_has_its_evidence_listed() -> None:
    missing = [step for step in STEPS if step not in EVIDENCE]
    assert not missing, f"add the evidence of these demo steps to EVIDENCE: {missing}"


def test_each_demo_steps_evidence_is_on_screen_whole() -> None:
    steps = [s for s in STEPS if s in EVIDENCE]
    drawn = drawn_steps(steps, [(120, 36), (80, 24)])
    failures = []
    for name, index in steps:
        ev = EVIDENCE[(name, index)]
        wanted = {(120, 36): ev.sights, (80, 24): tuple(s for s in ev.sights if s.key)}
        for size, (rows, panels) in drawn[(name, index)].items():
            screen = "\n".join(rows)
            for sight in wanted[size]:
                text = panels[sight.panel]
                if not re.search(sight.reads, text):
                    failures.append(
                        f"{name} step {index + 1} at {size}: {sight.reads!r} not in "
                        f"#{sight.panel}:\n{text}\n\nthe screen:\n{screen}"
                    )
                elif "…" in text:
                    failures.append(
                        f"{name} step {index + 1} at {size}: cut in #{sight.panel}:\n{text}"
                    )
            why = _narration_says_it_all(name, index, panels["narration"], size)
            if why:
                failures.append(why)
    assert not failures, f"{len(failures)} failures; the first:\n" + failures[0]


def _narration_says_it_all(name: str, index: int, text: str, size: tuple[int, int]) -> str:
    """Why not every bullet is on screen with no page marker saying so ('' when all is well)."""
    step = SCENARIOS[name].steps[index]
    flat = " ".join(text.split())
    shown = [b for b in step.narration if " ".join(b.split()[:4]) in flat]
    if not shown:
        return f"{name} step {index + 1} at {size}: no bullet shown:\n{text}"
    if len(shown) < len(step.narration):
        pages = re.search(r"page 1/(\d+)", text)
        if not (pages and int(pages.group(1)) > 1):
            return f"{name} step {index + 1} at {size}: bullets dropped silently:\n{text}"
    return ""


def test_the_measures_come_first_and_the_narration_takes_what_is_left() -> None:
    from tui.layout import Narration, Share, share

    column = {0: 29, 1: 22, 2: 19, 3: 16}.__getitem__  # rows at each level, borders in
    n = Narration(every=11, comfort=8, floor=5, least=4)
    assert share(40, column, n) == Share(0, 11)  # room for all
    assert share(33, column, n) == Share(1, 11)  # top borders, one-line phases: all bullets
    assert share(30, column, n) == Share(1, 8)  # two bullets a page
    assert share(26, column, n) == Share(2, 7)  # else the column gives more up first
    assert share(24, column, n) == Share(2, 5)  # the narration's floor: two lines
    assert share(20, column, n) == Share(3, 4)  # very short: the title and one line
    assert share(20, column, None) == Share(2, None)
