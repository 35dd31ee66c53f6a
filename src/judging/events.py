"""The event log's lines, derived from successive snapshots: deaths, spawns, hand-off
losses, overflow episodes, new diagnoses. The same rules for every stream of snapshots:
a live session, an attached server, a replayed recording (`derive_events`, which also
says where a recording starts and when its load changed, as a live session logs them as
it makes them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from values.snapshot import Snapshot
from values.units import queue_figure

from . import stuck
from .diagnosis import OVERFLOW_NEAR_FULL

OVERFLOW_QUIET_S = 1.0  # seconds without overflow before the log says it ended


@dataclass(frozen=True, slots=True)
class LabEvent:
    """A line for the event log: spawns, deaths, overflow start/end, load and model changes."""

    time: float  # time.monotonic()
    kind: str  # "model", "load", "spawn", "death", "overflow", "diagnosis", "fault", "error",
    # "stuck" (a stuck worker's stack, taken by itself)
    message: str


class EventDeriver:
    """Event-log lines from successive snapshots: deaths, spawns, overflow episodes, new
    diagnoses. One per stream of snapshots (a live session or a replayed recording)."""

    def __init__(self) -> None:
        self.prev: Snapshot | None = None
        self.overflowing = False
        self.overflow_seen = 0.0  # time of the latest sample that overflowed
        self.seen: set[str] = set()  # diagnosis rules in the previous snapshot

    def step(self, snap: Snapshot) -> list[LabEvent]:
        out: list[LabEvent] = []

        def log(kind: str, message: str) -> None:
            out.append(LabEvent(snap.time, kind, message))

        prev, self.prev = self.prev, snap
        m, pm = snap.model, prev.model if prev else None
        if m is not None and pm is not None:
            if (m.deaths or 0) > (pm.deaths or 0):
                status = m.last_death_status
                how = f"signal {-status}" if status is not None and status < 0 else f"exit {status}"
                log("death", f"worker pid {m.last_death_pid} died ({how})")
            spawned = (m.spawns or 0) - (pm.spawns or 0)
            if spawned > 0:
                log("spawn", f"master spawned {spawned} worker{'s' * (spawned > 1)}")
            lost = (m.handoff_failures or 0) - (pm.handoff_failures or 0)
            if lost > 0:  # cluster: accepted, never served (no worker, or no free fd)
                log(
                    "error",
                    f"{lost} connection{'s' * (lost > 1)} lost in hand-off to a worker "
                    f"({m.handoff_failures} so far)",
                )
        # the kernel's counter is namespace-wide: it counts only while one of ours is near full
        near_full = any(ln.fill >= OVERFLOW_NEAR_FULL for ln in snap.listeners)
        overflowing = any(ln.full for ln in snap.listeners) or (
            near_full and bool(snap.kernel and snap.kernel.overflows_delta)
        )
        # "ended" only after OVERFLOW_QUIET_S without overflow, so a queue hovering at its
        # limit reads as one episode, not a flicker of starts and ends
        queue = f"queue {queue_figure(snap.queue, snap.queue_limit)}"
        if overflowing:
            self.overflow_seen = snap.time
            if not self.overflowing:
                self.overflowing = True
                log("overflow", f"accept queue overflow started, {queue}")
        elif self.overflowing and snap.time - self.overflow_seen >= OVERFLOW_QUIET_S:
            self.overflowing = False
            log("overflow", f"accept queue overflow ended, {queue}")
        for d in snap.diagnoses:
            if d.rule not in self.seen:
                log("diagnosis", d.message)
        self.seen = {d.rule for d in snap.diagnoses}
        for c in snap.stuck:
            log("stuck", stuck.event_line(c, c.time))
        return out


def derive_events(snapshots: Iterable[Snapshot]) -> list[LabEvent]:
    """A recording's event log: the live rules above, plus where it starts and each change
    of load (which a live session logs as it makes it)."""
    out: list[LabEvent] = []
    deriver = EventDeriver()
    prev: Snapshot | None = None
    for snap in snapshots:
        model, client = snap.model, snap.client
        if prev is None and model is not None:
            message = f"recording of {model.name} (root pid {model.root_pid})"
            out.append(LabEvent(snap.time, "model", message))
        before = prev.client if prev else None
        if client is not None and (
            before is None or before.level != client.level or before.clients != client.clients
        ):
            out.append(
                LabEvent(snap.time, "load", f"load {client.level}: {client.clients} clients")
            )
        out.extend(deriver.step(snap))
        prev = snap
    return out
