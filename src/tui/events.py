"""Event-log lines for sources without a Session (replays, tests): the Session's own
rules (`lab.session.EventDeriver`), plus what only a recording needs said (where it
starts, and changes of load, which a live session logs as it makes them).
"""

from __future__ import annotations

from collections.abc import Iterable

from lab.session import EventDeriver, LabEvent
from values.snapshot import Snapshot


def derive_events(snapshots: Iterable[Snapshot]) -> list[LabEvent]:
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
