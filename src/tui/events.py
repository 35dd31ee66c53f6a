"""Event-log lines for sources without a Session (replays, tests): the Session's own
rules (`lab.session.EventDeriver`), plus what only a recording needs said (where it
starts, and changes of load, which a live session logs as it makes them).
"""

from __future__ import annotations

from collections.abc import Iterable

from lab.session import EventDeriver, LabEvent
from telemetry.snapshot import Snapshot


def derive_events(snapshots: Iterable[Snapshot]) -> list[LabEvent]:
    out: list[LabEvent] = []
    deriver = EventDeriver()
    prev: Snapshot | None = None
    for snap in snapshots:
        t = snap.time
        m = snap.model
        if prev is None and m is not None:
            out.append(LabEvent(t, "model", f"recording of {m.name} (root pid {m.root_pid})"))
        c, pc = snap.client, prev.client if prev else None
        if c is not None and (pc is None or pc.level != c.level or pc.clients != c.clients):
            out.append(LabEvent(t, "load", f"load {c.level}: {c.clients} clients"))
        out.extend(deriver.step(snap))
        prev = snap
    return out
