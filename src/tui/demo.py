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
        step = step or self.step
        return step.level.with_(duration=max(step.level.duration, step.seconds + 10.0))

    def begin(self) -> None:
        self.started = time.monotonic()
        fault = self.step.fault
        self.next_fault = fault.after_s if fault is not None else math.inf

    def elapsed(self) -> float | None:
        return None if self.started is None else time.monotonic() - self.started

    def remaining(self) -> float | None:
        elapsed = self.elapsed()
        return None if elapsed is None else self.step.seconds - elapsed

    def go(self, delta: int) -> bool:
        """Move to another step; False when there is none that way."""
        index = self.index + delta
        if not 0 <= index < len(self.scenario.steps):
            return False
        self.index = index
        self.started = None
        self.next_fault = math.inf
        return True

    def take_fault(self) -> Fault | None:
        """The step's fault when it is due (and schedule its repeat), else None."""
        elapsed = self.elapsed()
        fault = self.step.fault
        if fault is None or elapsed is None or elapsed < self.next_fault:
            return None
        self.next_fault = fault.next_after(elapsed)
        return fault

    def advance_due(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0 and not self.last
