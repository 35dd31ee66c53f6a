"""Playing a demo Scenario on a live session: restart per step, inject the step's fault
into the worker in its slot after `after_s`, advance after `seconds` (or on a key)."""

from __future__ import annotations

import math
import time

from loadgen.levels import LoadLevel
from serverscope.demos import Fault, Scenario, Step

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
