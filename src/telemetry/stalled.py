"""Rules about one accept queue and who owns it: a reuseport queue backed up behind its worker.

A pure function of the window, as every rule in `diagnosis` (which lists it in RULES).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from .rulekit import live as _live
from .snapshot import Diagnosis, Severity, Snapshot

# one reuseport queue backed up: one listener's own queue long, the others' short.
REUSEPORT_MIN_QUEUE = 10  # the backed-up queue's length
REUSEPORT_OTHERS_FRACTION = 0.25  # every other queue at most this fraction of it


def reuseport_backlog(win: Sequence[Snapshot]) -> Diagnosis | None:
    """One SO_REUSEPORT queue grows (its worker stalled) while the others stay short."""
    if not win:
        return None
    last = win[-1]
    by_port: dict[int, list] = {}
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
            f"one reuseport queue backed up: {owner} queue {top.queue}, others {rest}",
        )
    return None
