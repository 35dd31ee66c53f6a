"""What the worker detail (Enter on a worker) says: the worker, its current request and
client, and the connections it holds, each with the source it was read from. Plain
`rich.Text` lines from a snapshot, so they are tested without an app.

Ages are against the snapshot's own time (a replay shows them as they were); what was not
measured is said to be unknown, with why, never left blank.
"""

from __future__ import annotations

from rich.text import Text

from values.current import (
    PEERS_LISTED,
    Current,
    Peers,
    Via,
    describe_current,
    describe_peer,
    seconds,
)
from values.snapshot import GLYPHS, Snapshot, WorkerSample
from values.units import num

from . import cpu_limit
from .drawing import STATE_STYLE

SOURCE = {
    Via.SCOREBOARD: "its scoreboard slot, written by the worker",
    Via.MOD_STATUS: "mod_status ExtendedStatus, read while a worker is free",
}
PEERS_SOURCE = "their sockets: sock_diag and tcp_info, read at most every 0.5 s"


def title(w: WorkerSample) -> str:
    """`worker 3 · pid 1234`, `pid 30098 (nginx)`, `tid 30537 of pid 30533`."""
    if w.slot is not None:
        who = f"{w.label} · {'tid' if w.is_thread else 'pid'} {w.tid if w.is_thread else w.pid}"
    elif w.is_thread:
        who = f"tid {w.tid} of pid {w.pid}"
    else:
        who = w.label
    name = f" ({w.name})" if w.name else ""
    role = "" if w.is_worker else f" · {w.role}"
    return f"{who}{name}{role}"


def lines(w: WorkerSample, snap: Snapshot) -> list[Text]:
    """The detail of worker `w` in snapshot `snap`."""
    now = snap.time
    state = Text(f"{GLYPHS.get(w.state, '?')} {w.state}", style=STATE_STYLE.get(w.state, ""))
    head = Text.assemble(Text(title(w), style="bold"), " · ", state)
    if w.state_age_s is not None:
        head.append(f" for {seconds(w.state_age_s)}")
    head.append(f" · {num(w.connections)} connection{'' if w.connections == 1 else 's'}")
    out = [head, Text()]
    if (limit := cpu_limit.worker_line(w, snap)) is not None:
        out += [limit, Text()]
    out += _current(w, w.current, now)
    if w.peers is not None or w.slot is None:
        out.append(Text())
        out += _peers(w.peers, now)
    return out


def _current(w: WorkerSample, c: Current | None, now: float) -> list[Text]:
    if c is None:
        if w.slot is not None:
            why = "its slot was not read"
        elif w.is_thread:
            why = "not told apart per thread from outside"
        else:
            why = "not seen from outside; Apache's mod_status shows them (ExtendedStatus)"
        return [Text(f"request and client: unknown: {why}", style="dim")]
    first, client = describe_current(c, now)
    busy = "bold" if c.requests else ""
    return [
        Text(first, style=busy),
        Text(client),
        Text(f"from {SOURCE.get(c.via, c.via)}", style="dim"),
    ]


def _peers(p: Peers | None, now: float) -> list[Text]:
    if p is None:
        return [Text("connections: not read (its sockets are not ours to read)", style="dim")]
    if not p.total:
        return [Text("connections: none held", style="dim")]
    shown = len(p.listed)
    which = "all" if shown == p.total else f"the {shown} oldest" if shown else "none listed"
    out = [Text(f"connections: {p.total} ({which}; from {PEERS_SOURCE})", style="dim")]
    width = max((len(x.client) for x in p.listed), default=0)
    for x in p.listed:
        out.append(Text(f"  {x.client:<{width}}  {describe_peer(x, now)}"))
    if p.total > shown:
        why = "not listed" if shown == PEERS_LISTED else "not read yet"
        out.append(Text(f"  + {p.total - shown} more ({why})", style="dim"))
    return out
