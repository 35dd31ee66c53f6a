"""Demo scenarios as data: a Scenario is steps, a Step starts a model under a load and may
do one Fault to a worker; `apply_fault` does it through the live Session.

The catalogue of scenarios is `lab.catalogue`; the loop that plays them, `lab.player`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from loadgen.levels import LoadLevel
from servers.config import ServerConfig

from .evidence import Evidence
from .session import Session

MASTER = -1  # Fault.slot for the model's root process (the master), not a worker slot


FAULT_ACTIONS = ("pause", "kill", "burn")  # what a user may ask for (`fix --fault`)
FAULT_FORM = "ACTION[:SLOT][@SECONDS][+FOR]"


@dataclass(frozen=True)
class Fault:
    """Something done to one worker during a step."""

    action: str  # "pause" (SIGSTOP), "kill" (SIGKILL), "burn" (burn CPU a few seconds),
    # "resume" (SIGCONT a paused one)
    slot: int = 0  # scoreboard slot of the worker it is done to; MASTER (-1): the root
    after_s: float = 2.0  # seconds into the step
    every_s: float | None = None  # "burn" only: do it again every this many seconds
    for_s: float | None = None  # "pause" only: resumed (SIGCONT) this long after (None: not)

    def describe(self) -> str:
        who = "the master" if self.slot == MASTER else f"worker {self.slot}"
        what = {
            "pause": "pause (SIGSTOP)",
            "resume": "resume (SIGCONT)",
            "kill": "kill (SIGKILL)",
            "burn": "burn CPU in",
        }
        again = f", again every {self.every_s:g} s" if self.every_s else ""
        lasting = f" for {self.for_s:g} s" if self.for_s else ""
        return (
            f"{what.get(self.action, self.action)} {who} after {self.after_s:g} s{lasting}{again}"
        )

    def then(self) -> Fault | None:
        """What ends it, as a fault of its own (a paused worker resumed), or None."""
        if self.action != "pause" or not self.for_s:
            return None
        return Fault("resume", slot=self.slot, after_s=self.after_s + self.for_s)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """FAULT_FORM, e.g. "pause:0@3" (pause worker 0 three seconds in) or "pause:0@2+3"
        (... two seconds in, for three seconds). ValueError: one line saying why."""
        head, _, when = text.partition("@")
        action, _, slot = head.partition(":")
        at, plus, lasting = when.partition("+")
        if action not in FAULT_ACTIONS:
            raise ValueError(
                f"fault {text!r}: the action is one of {', '.join(FAULT_ACTIONS)} "
                "(as in pause:0@3: pause worker 0 three seconds into the load)"
            )
        try:
            n = MASTER if slot == "master" else int(slot or 0)
            after = float(at or 2.0)
            for_s = float(lasting) if plus else None
        except ValueError:
            raise ValueError(f"fault {text!r}: want {FAULT_FORM}, as in pause:0@3") from None
        if n < MASTER or not 0 <= after <= 3600:
            raise ValueError(f"fault {text!r}: slot >= 0 (or master), 0 <= seconds <= 3600")
        if for_s is not None and (action != "pause" or not 0 < for_s <= 3600):
            raise ValueError(f"fault {text!r}: +FOR is a pause's length, 0 < FOR <= 3600 s")
        return cls(action, slot=n, after_s=after, for_s=for_s)

    def missed(self, done: Sequence[str]) -> str | None:
        """Why a run whose faults done read `done` (RunSummary.faults) did not do this one,
        or None when it did."""
        if any(line.startswith(f"{self.action} ") for line in done):
            return None
        return "; ".join(done) or f"the run ended before {self.after_s:g} s"

    def next_after(self, t: float) -> float:
        """When, in seconds into the step, to do it again after doing it at `t` (inf: never)."""
        return t + self.every_s if self.action == "burn" and self.every_s else math.inf


# models whose worker in slot N is the Nth of --workers (a process each, never replaced
# by a higher slot): a fault on a slot past them is a mistake, known before any run
ONE_SLOT_A_WORKER = ("cluster", "many_accepts", "reuseport")


def check_slot(fault: Fault | None, cfg: ServerConfig) -> None:
    """ValueError (one line) for a fault on a worker slot `cfg` (resolved) does not have."""
    if fault is None or fault.slot == MASTER or cfg.model not in ONE_SLOT_A_WORKER:
        return
    if cfg.workers is not None and fault.slot >= cfg.workers:
        raise ValueError(
            f"--fault on worker {fault.slot}: {cfg.model} has {cfg.workers} workers "
            f"(slots 0-{cfg.workers - 1})"
        )


@dataclass(frozen=True)
class Step:
    title: str
    config: ServerConfig
    level: LoadLevel
    narration: tuple[str, ...]  # what the audience should look at, in order
    fault: Fault | None = None
    expect: tuple[str, ...] = ()  # diagnosis rule ids that this step should bring up
    seconds: float = 20.0  # how long the step runs before the demo moves on
    absent: tuple[str, ...] = ()  # rule ids this step (the contrast) should NOT bring up
    min_seconds: float = 0.0  # shortest step that shows `expect` (`--seconds` below it is
    # refused: `demo master --seconds 4` and `demo gil --seconds 4` reported "not shown")
    shows: tuple[Evidence, ...] = ()  # figures the narration promises, checked as it plays

    @property
    def load_line(self) -> str:
        """Which load runs, as a user would start it: a preset by name, or the `load`
        options of a custom one (a demo's load is either, never a look-alike name)."""
        lv = self.level
        if lv.preset is not None:
            return f"load: the {lv.preset} preset"
        return f"load: custom, as `serverscope load URL {lv.flags()}`"


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # one line for `demo --list`
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.config.model for s in self.steps))


def with_seconds(scenario: Scenario, seconds: float) -> Scenario:
    """The scenario with every step `seconds` long (faults kept within the step)."""
    steps = []
    for st in scenario.steps:
        fault = st.fault
        if fault is not None and fault.after_s >= seconds * 0.5:
            fault = dataclasses.replace(fault, after_s=round(seconds * 0.3, 2))
        steps.append(dataclasses.replace(st, seconds=seconds, fault=fault))
    return dataclasses.replace(scenario, steps=tuple(steps))


def too_short(scenario: Scenario, seconds: float) -> str | None:
    """Why steps of `seconds` cannot show what `scenario` promises (None: they can)."""
    worst = max(scenario.steps, key=lambda st: st.min_seconds)
    if seconds >= worst.min_seconds:
        return None
    n = scenario.steps.index(worst) + 1
    shows = " and ".join(worst.expect) or "its phenomenon"
    return (
        f"--seconds {seconds:g} is too short for demo {scenario.name}: step {n} needs "
        f"at least {worst.min_seconds:g} s to show {shows}"
    )


def apply_fault(session: Session, fault: Fault) -> str:
    """Do `fault` to its worker (or the master) on a live session; one line saying what."""
    sup = session.supervisor
    if sup is None:
        return "no server to fault"
    if fault.slot == MASTER:
        pid = sup.root_pid
        who = f"master pid {pid}"
    else:
        slots = sup.read().slots
        if fault.slot >= len(slots) or slots[fault.slot].pid <= 0:
            return f"no worker in slot {fault.slot}"
        pid = slots[fault.slot].pid
        who = f"worker {fault.slot} (pid {pid})"
    try:
        if fault.action == "pause":
            if pid in session.paused_pids:
                return f"{who} already paused"
            session.pause_worker(pid)
        elif fault.action == "resume":
            if pid not in session.paused_pids:
                return f"{who} not paused"
            session.pause_worker(pid)  # (again: SIGCONT)
        elif fault.action == "kill":
            session.kill_worker(pid)
        elif fault.action == "burn":
            session.burn_worker(pid)
        else:
            return f"unknown fault {fault.action!r}"
    except ValueError as e:
        return str(e)
    return f"{fault.action} {who}"
