"""The accept-skew rule: a few workers take most accepts (epoll on a shared socket), judged
over the workers alive through the whole window (analysis.ImbalanceTracker).

A pure function of the window, as every rule in `diagnosis` (which lists it in RULES).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import analysis
from .realkind import SKEW_FIXES
from .rulekit import fix as _fix
from .rulekit import live as _live
from .rulekit import pct as _pct
from .rulekit import span as _span
from .snapshot import Diagnosis, Imbalance, Severity, Snapshot

# accept skew: enough accepts to judge, and far from even. The rules see only workers
# alive through the whole window (analysis.ImbalanceTracker), never listeners or masters.
SKEW_MIN_ACCEPTS = 20  # accepts in the window below which no judgement is made ...
SKEW_MIN_ACCEPTS_PER_WORKER = 5  # ... nor below this many per eligible worker: 100
# accepts cannot spread over 250 workers, so proc_spawn under overload showed a false
# "worker 1 took 1% ... 250 workers, 100 accepts"
SKEW_MIN_CONNECTIONS_PER_WORKER = 2  # likewise for the open-connections judgement
SKEW_MAX_JAIN = 0.7  # Jain's index below this ...
SKEW_MIN_MAX_OVER_MEAN = 1.5  # ... and the top worker above this many times the mean
SKEW_MIN_CONNECTIONS = 8  # open connections (mean over the window) to judge their spread
SPREAD_MIN_CPU_SECONDS = 0.5  # CPU in the window (10% of a core over 5 s) to judge its spread


def enough_to_judge(metric: str, imb: Imbalance | None) -> bool:
    """Whether a window's spread of `metric` ("accepts", "connections", "cpu") rests on
    enough events for a skew to mean anything; the renderers colour an index only then
    (1 connection among 125 threads reads Jain 0.01, top share 100%: true, and no skew)."""
    if metric == "accepts":
        return _judgeable(imb, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER)
    if metric == "connections":
        return _judgeable(imb, SKEW_MIN_CONNECTIONS, SKEW_MIN_CONNECTIONS_PER_WORKER)
    return _judgeable(imb, SPREAD_MIN_CPU_SECONDS, 0.0)


def _judgeable(imb: Imbalance | None, minimum: float, per_worker: float) -> bool:
    """Enough events over enough workers for their spread to mean anything."""
    if imb is None or imb.jain is None or imb.n < 2:
        return False
    return imb.total >= max(minimum, per_worker * imb.n)


def _skewed(imb: Imbalance | None, minimum: float, per_worker: float) -> bool:
    if not _judgeable(imb, minimum, per_worker):
        return False
    assert imb is not None and imb.jain is not None
    return imb.jain < SKEW_MAX_JAIN and (imb.max_over_mean or 0) >= SKEW_MIN_MAX_OVER_MEAN


def accept_skew(win: Sequence[Snapshot]) -> Diagnosis | None:
    """A few workers take most accepts (many_accepts with epoll; not FIFO accept()).

    With long-lived keep-alive connections the accepts happen in one burst and leave the
    window, but the skew stays in who holds the connections: then (only when the window
    has too few accepts to judge) the rule judges open connections instead, among workers
    that multiplex (the top one holds several). With plenty of evenly spread accepts the
    held connections are short-lived, and an instant's uneven count is no skew.

    Not where a master deals the connections (cluster's round robin, goroutines'
    acceptor: the model has dispatched, in the window or before it): the kernel does not
    choose there, so there is no accept skew to name, and a window that cuts the dealt
    bursts unevenly showed a false "worker 1 took 64% of accepts (Jain 0.53, 4 workers,
    95 accepts)" on cluster, whose run totals were 1960/1960/1959/1959."""
    if not win:
        return None
    if any(
        (s.model.dispatches or 0) > 0 or (s.model.dispatches_delta or 0) > 0 for s in win if s.model
    ):
        return None
    last = win[-1]  # the sampler has already measured the window into the latest snapshot
    imbs = last.imbalance if last.imbalance.accepts else analysis.imbalance_set(win)
    imb = imbs.accepts
    if not _skewed(imb, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER):
        if _judgeable(imb, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER):
            return None  # accepts enough to judge, and even: held connections are transient
        conns = imbs.connections
        top = max((w.connections or 0 for w in _live(last)), default=0)
        if top < 2 or not _skewed(conns, SKEW_MIN_CONNECTIONS, SKEW_MIN_CONNECTIONS_PER_WORKER):
            return None
        assert conns is not None and conns.jain is not None
        return Diagnosis(
            "accept_skew",
            Severity.WARNING,
            f"accept skew: {conns.top_worker} holds {_pct(100 * (conns.top_share or 0))} of "
            f"open connections (Jain {conns.jain:.2f}, {conns.n} workers, "
            f"{conns.total:.0f} connections){_fix(SKEW_FIXES, last)}",
        )
    assert imb is not None and imb.jain is not None
    return Diagnosis(
        "accept_skew",
        Severity.WARNING,
        f"accept skew: {imb.top_worker} took {_pct(100 * (imb.top_share or 0))} of accepts "
        f"in {_span(win)} (Jain {imb.jain:.2f}, {imb.n} workers, {imb.total:.0f} accepts)"
        f"{_fix(SKEW_FIXES, last)}",
    )
