"""KEPT FOR bench/bench_skew.py ONLY: the accept-skew rule before issue 22 (size floors and
the shape of the spread, no test against an even spread, no minimum span, no workers
left out), so the bench counts the old rule's verdicts on the same samples as today's."""

from __future__ import annotations

from collections.abc import Sequence

from judging import analysis
from values.findings import Imbalance
from values.snapshot import Snapshot

SKEW_MIN_ACCEPTS = 20
SKEW_MIN_ACCEPTS_PER_WORKER = 5
SKEW_MIN_CONNECTIONS_PER_WORKER = 2
SKEW_MAX_JAIN = 0.7
SKEW_MIN_MAX_OVER_MEAN = 1.5
SKEW_MIN_CONNECTIONS = 8


def _judgeable(imb: Imbalance | None, minimum: float, per_worker: float) -> bool:
    if imb is None or imb.jain is None or imb.n < 2:
        return False
    return imb.total >= max(minimum, per_worker * imb.n)


def _skewed(imb: Imbalance | None, minimum: float, per_worker: float) -> bool:
    if not _judgeable(imb, minimum, per_worker):
        return False
    assert imb is not None and imb.jain is not None
    return imb.jain < SKEW_MAX_JAIN and (imb.max_over_mean or 0) >= SKEW_MIN_MAX_OVER_MEAN


def old_accept_skew(win: Sequence[Snapshot]) -> bool:
    """Whether the old rule fired over `win` (its message aside)."""
    if not win:
        return False
    if any(
        (s.model.dispatches or 0) > 0 or (s.model.dispatches_delta or 0) > 0 for s in win if s.model
    ):
        return False
    last = win[-1]
    imbs = last.imbalance if last.imbalance.accepts else analysis.imbalance_set(win)
    imb = imbs.accepts
    if not _skewed(imb, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER):
        if _judgeable(imb, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER):
            return False
        conns = imbs.connections
        top = max((w.connections or 0 for w in last.live_workers), default=0)
        return top >= 2 and _skewed(conns, SKEW_MIN_CONNECTIONS, SKEW_MIN_CONNECTIONS_PER_WORKER)
    return True
