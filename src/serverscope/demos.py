"""Guided demos: scenarios that start the right model, load and fault, and say what to watch.

Each scenario is a list of steps; the TUI plays them (`serverscope demo NAME`), the tests
run each headless and check that the expected diagnosis appears.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loadgen.levels import LoadLevel
from servers.config import ServerConfig


@dataclass(frozen=True)
class Fault:
    """Something done to one worker during a step."""

    action: str  # "pause" (SIGSTOP), "kill" (SIGKILL) or "burn" (burn CPU a few seconds)
    slot: int = 0  # scoreboard slot of the worker it is done to
    after_s: float = 2.0  # seconds into the step


@dataclass(frozen=True)
class Step:
    title: str
    config: ServerConfig
    level: LoadLevel
    narration: tuple[str, ...]  # what the audience should look at, in order
    fault: Fault | None = None
    expect: tuple[str, ...] = ()  # diagnosis rule ids that this step should bring up
    seconds: float = 20.0  # how long the step runs before the demo moves on


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # one line for `demo --list`
    steps: tuple[Step, ...] = field(default_factory=tuple)


SCENARIOS: dict[str, Scenario] = {}
