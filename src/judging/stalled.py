"""Rules about one accept queue and who takes from it: a queue whose every taker is stopped
(its clients wait for nothing), a reuseport queue backed up behind its worker.

A pure function of the window, as every rule in `diagnosis` (which lists it in RULES).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from values.findings import Diagnosis, Severity
from values.snapshot import ListenerSample, Snapshot, WorkerSample

from . import explain
from .rulekit import live as _live

# a stalled owner: a non-empty queue whose every taker has been stopped this long
STALLED_MIN_S = 1.0  # (a debugger or a stack dump stops a process for a moment)

# one reuseport queue backed up: one listener's own queue long, the others' short.
REUSEPORT_MIN_QUEUE = 10  # the backed-up queue's length
REUSEPORT_OTHERS_FRACTION = 0.25  # every other queue at most this fraction of it


def owners(s: Snapshot, ln: ListenerSample) -> list[WorkerSample]:
    """The live entities that take from `ln`: the processes whose epoll holds it (attach,
    `ListenerSample.owners`), else the workers whose listener it is (one row per process)."""
    if ln.owners:
        rows = [w for w in s.workers if w.alive and w.pid in ln.owners]
    else:
        rows = [w for w in s.live_workers if w.listener == ln.index]
    by_pid = {w.pid: w for w in rows}  # a thread worker's rows share their process's fate
    return list(by_pid.values())


def stalled_owner(win: Sequence[Snapshot]) -> Diagnosis | None:
    """Connections wait in a queue whose every taker is stopped (SIGSTOP, a tracer): with
    reuseport the kernel keeps hashing its share of new connections there, and nobody
    else takes them. Named before any skew: the stopped worker's missing accepts are why
    the others take them all (nginx with reuseport read "accept skew: pid 16846 took 100%
    of accepts", the healthy one). How long: the sampler's `stalled_s`, the time the
    queue has been non-empty with its takers stopped in every sample, a lower bound on
    the oldest connection's wait."""
    if not win:
        return None
    last = win[-1]
    stalled = [
        ln for ln in last.listeners if ln.stalled_s is not None and ln.stalled_s >= STALLED_MIN_S
    ]
    if not stalled:
        return None
    ln = max(stalled, key=lambda x: (x.stalled_s or 0.0, x.queue))
    who = owners(last, ln)
    if not who:
        return None
    group = [x for x in last.listeners if x.port == ln.port]
    names = ", ".join(w.label for w in who)
    one = len(who) == 1
    if len(group) > 1:
        where = f"{'its' if one else 'their'} own reuseport queue on port {ln.port}"
        rest = max(x.queue for x in group if x is not ln)
        held = "none" if not rest else f"<= {rest}"
        n = len(group) - 1
        others = f"; the other queue holds {held}" if n == 1 else f"; the other {n} hold {held}"
        remedy = explain.stalled_remedy(last, ln.queue)
    else:
        where = f"the accept queue on port {ln.port}"
        others = remedy = ""
    stopped = f"{names} {'is' if one else 'are'} stopped"
    more = f" (and {len(stalled) - 1} more stalled queues)" if len(stalled) > 1 else ""
    waited = int(ln.stalled_s or 0.0)  # a lower bound: rounded down
    return Diagnosis(
        "stalled_owner",
        Severity.CRITICAL,
        f"stalled worker: {stopped} (/proc state T) with {ln.queue} connections in {where}, "
        f"the oldest waiting >= {waited} s{others}{more}{remedy}",
    )


def reuseport_backlog(win: Sequence[Snapshot]) -> Diagnosis | None:
    """One SO_REUSEPORT queue grows (its worker stalled) while the others stay short.
    Left to `stalled_owner` once every worker taking from it has been stopped a while."""
    if not win:
        return None
    last = win[-1]
    by_port: dict[int, list[ListenerSample]] = {}
    for ln in last.listeners:
        by_port.setdefault(ln.port, []).append(ln)
    for lns in by_port.values():
        if len(lns) < 2:
            continue
        top = max(lns, key=lambda ln: ln.queue)
        others = [ln.queue for ln in lns if ln is not top]
        if top.queue < REUSEPORT_MIN_QUEUE:
            continue
        if max(others) > top.queue * REUSEPORT_OTHERS_FRACTION:
            continue
        if top.stalled_s is not None and top.stalled_s >= STALLED_MIN_S:
            continue  # its takers are stopped: stalled_owner names it
        owner = next(
            (w.label for w in _live(last) if w.listener == top.index),
            f"listener {top.index}",
        )
        rest = (
            "0" if max(others) == 0 else f"<= {max(others)} (median {statistics.median(others):g})"
        )
        return Diagnosis(
            "reuseport_backlog",
            Severity.WARNING,
            f"one reuseport queue backed up: {owner} queue {top.queue}, others {rest}"
            f"{explain.reuseport_backlog(last, owner)}",
        )
    return None
