"""Event-log lines derived from a sequence of snapshots, for sources without a Session
(replays, tests). Live sessions derive the same kinds of lines themselves
(`Session._derive_events`); this mirrors those rules so a replay's log reads the same.
"""

from __future__ import annotations

from collections.abc import Iterable

from serverscope.session import LabEvent
from telemetry.snapshot import Snapshot


def derive_events(snapshots: Iterable[Snapshot]) -> list[LabEvent]:
    out: list[LabEvent] = []
    prev: Snapshot | None = None
    overflowing = False
    seen: set[str] = set()
    for snap in snapshots:
        t = snap.time
        m, pm = snap.model, prev.model if prev else None
        if prev is None and m is not None:
            out.append(LabEvent(t, "model", f"recording of {m.name} (root pid {m.root_pid})"))
        if m is not None and pm is not None:
            if (m.deaths or 0) > (pm.deaths or 0):
                status = m.last_death_status
                how = f"signal {-status}" if status is not None and status < 0 else f"exit {status}"
                out.append(LabEvent(t, "death", f"worker pid {m.last_death_pid} died ({how})"))
            spawned = (m.spawns or 0) - (pm.spawns or 0)
            if spawned > 0:
                out.append(
                    LabEvent(t, "spawn", f"master spawned {spawned} worker{'s' * (spawned > 1)}")
                )
        c, pc = snap.client, prev.client if prev else None
        if c is not None and (pc is None or pc.level != c.level or pc.clients != c.clients):
            out.append(LabEvent(t, "load", f"load {c.level}: {c.clients} clients"))
        over = any(ln.full for ln in snap.listeners) or bool(
            snap.kernel and snap.kernel.overflows_delta
        )
        if over != overflowing:
            overflowing = over
            what = "started" if over else "ended"
            out.append(
                LabEvent(
                    t,
                    "overflow",
                    f"accept queue overflow {what}, queue {snap.queue}/{snap.queue_limit}",
                )
            )
        names = {d.rule for d in snap.diagnoses}
        for d in snap.diagnoses:
            if d.rule not in seen:
                out.append(LabEvent(t, "diagnosis", d.message))
        seen = names
        prev = snap
    return out
