"""Playing a demo Scenario on a live session: restart per step, inject the step's fault
into the worker in its slot after `after_s`, advance after `seconds` (or on a key).

`DemoPlayer` is the one clock of a demo: which step, when its fault is due, when it is
over. The TUI's demo screen drives it from its refresh timer; `play` drives it headless
(the tests, `serverscope demo --headless`), sampling the session in between.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from loadgen.levels import LoadLevel
from values.snapshot import SAMPLE_PERIOD_S, Snapshot

from .scenarios import Fault, Scenario, Step, apply_fault, with_seconds
from .session import Session

STARTING = -1.0


class DemoPlayer:
    def __init__(self, scenario: Scenario) -> None:
        if not scenario.steps:
            raise ValueError(f"demo {scenario.name} has no steps")
        self.scenario = scenario
        self.index = 0
        self.started: float | None = None  # monotonic start of the running step
        self.next_fault = math.inf  # seconds into the step of the next fault

    @property
    def step(self) -> Step:
        return self.scenario.steps[self.index]

    @property
    def last(self) -> bool:
        return self.index == len(self.scenario.steps) - 1

    def level(self, step: Step | None = None) -> LoadLevel:
        """The step's load, lasting at least as long as the step."""
        s = step or self.step
        return s.level.with_(duration=max(s.level.duration, s.seconds + 10.0))

    def begin(self) -> None:
        self.started = time.monotonic()
        f = self.step.fault
        self.next_fault = f.after_s if f is not None else math.inf

    def elapsed(self) -> float | None:
        return None if self.started is None else time.monotonic() - self.started

    def remaining(self) -> float | None:
        e = self.elapsed()
        return None if e is None else self.step.seconds - e

    def go(self, delta: int) -> bool:
        """Move to another step; False when there is none that way."""
        i = self.index + delta
        if not 0 <= i < len(self.scenario.steps):
            return False
        self.index = i
        self.started = None
        self.next_fault = math.inf
        return True

    def take_fault(self) -> Fault | None:
        """The step's fault when it is due (and schedule its repeat), else None."""
        e = self.elapsed()
        f = self.step.fault
        if f is None or e is None or e < self.next_fault:
            return None
        self.next_fault = f.next_after(e)
        return f

    def advance_due(self) -> bool:
        r = self.remaining()
        return r is not None and r <= 0 and not self.last


# -- the headless player --------------------------------------------------------------------


@dataclass
class StepResult:
    step: Step
    index: int
    seconds: float = 0.0  # how long it ran
    samples: int = 0
    seen: dict[str, float] = field(default_factory=dict)  # rule -> first seen, s into step
    messages: dict[str, str] = field(default_factory=dict)  # rule -> first message
    shown: dict[str, float] = field(default_factory=dict)  # evidence key -> first seen, s
    fault_done: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(r for r in self.step.expect if r not in self.seen)

    @property
    def unshown(self) -> tuple[str, ...]:
        """What the narration promised (`Step.shows`) that never appeared."""
        return tuple(e.says for e in self.step.shows if e.key not in self.shown)

    @property
    def unwanted(self) -> tuple[str, ...]:
        return tuple(r for r in self.step.absent if r in self.seen)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing and not self.unwanted and not self.unshown


SampleHook = Callable[[int, Snapshot, float], None]  # step index, snapshot, s into step
StepHook = Callable[[int, Step], None]


def play(
    scenario: Scenario,
    *,
    seconds: float | None = None,
    stop_when_seen: bool = False,
    period: float = SAMPLE_PERIOD_S,
    on_step: StepHook | None = None,
    on_sample: SampleHook | None = None,
    stop: threading.Event | None = None,
    session_factory: Callable[..., Session] = Session,
) -> list[StepResult]:
    """Play every step with no UI: start its model and load, do its fault, sample.

    `seconds` overrides each step's length (the tests use a few seconds); with
    `stop_when_seen` a step with expectations (diagnoses and the figures its narration
    promises) ends as soon as all have appeared."""
    if seconds is not None:
        scenario = with_seconds(scenario, seconds)
    stop = stop or threading.Event()
    player = DemoPlayer(scenario)
    results: list[StepResult] = []
    session: Session | None = None
    try:
        while not stop.is_set():
            step = player.step
            res = StepResult(step, player.index)
            results.append(res)
            try:
                if session is None:
                    session = session_factory(step.config, player.level(), period=period)
                    session.start()
                else:
                    session.restart(step.config, player.level())
            except Exception as e:  # a model or load that cannot start: report, go on
                res.error = f"{type(e).__name__}: {e}"
                if session is not None and session.server is None:
                    session.close()
                    session = None
            else:
                if on_step is not None:
                    on_step(player.index, step)
                _run_step(session, player, res, period, stop, stop_when_seen, on_sample)
            if not player.go(1):
                break
    finally:
        if session is not None:
            session.close()
    return results


def _run_step(
    session: Session,
    player: DemoPlayer,
    res: StepResult,
    period: float,
    stop: threading.Event,
    stop_when_seen: bool,
    on_sample: SampleHook | None,
) -> None:
    step = player.step
    player.begin()
    while not stop.wait(period):
        fault = player.take_fault()
        if fault is not None:
            res.fault_done.append(apply_fault(session, fault))
        t = player.elapsed() or 0.0
        snap = session.sample()
        if snap is None:
            res.error = "the server is not running"
            break
        res.samples += 1
        for d in snap.diagnoses:
            if d.rule not in res.seen:
                res.seen[d.rule] = round(t, 2)
                res.messages[d.rule] = d.message
        for e in step.shows:
            if e.key not in res.shown and e.holds(snap):
                res.shown[e.key] = round(t, 2)
        if on_sample is not None:
            on_sample(res.index, snap, t)
        srv = session.server
        if srv is None or not srv.running:
            res.error = f"{step.config.model} exited during the step"
            break
        if stop_when_seen and (step.expect or step.shows) and not (res.missing or res.unshown):
            break
        if t >= step.seconds:
            break
    res.seconds = player.elapsed() or 0.0
