"""The accept-skew rule: a few workers take most accepts (epoll on a shared socket), judged
over the workers alive through the whole window (analysis.ImbalanceTracker), with a test
against an even spread (judging.evenness) on top of the size and shape floors.

A pure function of the window, as every rule in `diagnosis` (which lists it in RULES).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from values.findings import Diagnosis, Imbalance, Severity
from values.snapshot import Snapshot, is_stopped

from . import analysis, evenness, explain
from .rulekit import live as _live
from .rulekit import pct as _pct
from .rulekit import span as _span

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
SKEW_MIN_SPAN_S = 3.0  # seconds of measurement behind a window before skew is judged
SKEW_SATURATED_CPU = 90.0  # a worker at this % of one core (window mean) can take no more
SKEW_YOUNGER_S = 0.5  # held connections: a worker born this long after the oldest holder
# is not judged on them (a pool forked at once is born within milliseconds)


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

    Judged over at least SKEW_MIN_SPAN_S of measurement (half a second into a ramp, 13/11/0
    of 24 accepts read "Jain 0.66" while Apache was still settling its children), never
    over a window holding the end of a load (its queue drains then, whoever is free
    takes it), and only when an even spread is rejected at p < ALPHA (evenness.uniform_p)
    as well as far from even (Jain < SKEW_MAX_JAIN, top >= SKEW_MIN_MAX_OVER_MEAN x mean).
    A worker that could take no more (stopped, its epoll without the listener, saturated,
    pinned: see `_unable`) and took less than its share is left out: its few accepts are
    explained, not skew (a dead one is in no window: analysis.ImbalanceTracker).

    With long-lived keep-alive connections the accepts happen in one burst and leave the
    window, but the skew stays in who holds the connections: then (only when the window
    has too few accepts to judge) the rule judges open connections instead, among workers
    that multiplex (the top one holds several): the connections held at an instant are
    counts of the accepts that opened them, tested at both ends of the window (so the
    spread persisted through it). With plenty of evenly spread accepts the held
    connections are short-lived, and an instant's uneven count is no skew.

    Not where a master deals the connections (cluster's round robin, goroutines'
    acceptor: the model has dispatched, in the window or before it): the kernel does not
    choose there, so there is no accept skew to name, and a window that cuts the dealt
    bursts unevenly showed a false "worker 1 took 64% of accepts (Jain 0.53, 4 workers,
    95 accepts)" on cluster, whose run totals were 1960/1960/1959/1959."""
    if not win or analysis.covered_s(win) < SKEW_MIN_SPAN_S - 1e-6:
        return None
    if explain.dispatching(win):
        return None
    if any(analysis.load_over(s) for s in win):
        return None
    last = win[-1]  # the sampler has already measured the window into the latest snapshot
    imbs = last.imbalance if last.imbalance.accepts else analysis.imbalance_set(win)
    imb = imbs.accepts
    if _judgeable(imb, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER):
        if not _skewed(imb, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER):
            return None  # accepts enough to judge, and even: held connections are transient
        return _accepts_verdict(win)
    top = max((w.connections or 0 for w in _live(last)), default=0)
    if top < 2 or not _skewed(
        imbs.connections, SKEW_MIN_CONNECTIONS, SKEW_MIN_CONNECTIONS_PER_WORKER
    ):
        return None
    return _held_verdict(win)


@dataclass
class _Worker:
    """One worker alive through the whole window, as the verdict weighs it."""

    label: str
    accepts: int = 0
    cpu_s: float = 0.0
    stopped: bool = False  # stopped (SIGSTOP) at either end of the window
    pinned: bool = False  # held one connection, busy, throughout (see _workers)
    unpolled: bool = False  # its epoll did not hold the listener at either end
    first: int = 0  # connections held at the window's first snapshot
    last: int = 0  # ... and at its last
    age_s: float | None = None  # at the window's last snapshot
    young: bool = False  # held connections: born after the oldest holder (see _held_verdict)
    full: bool = False  # its epoll did not hold the listener at the window's end
    total: int | None = None  # accepts since counting began (accepts_total), at the end


# a worker's connections held at the window's first and last snapshot
_ENDS: tuple[Callable[[_Worker], int], ...] = (lambda r: r.first, lambda r: r.last)


def _workers(win: Sequence[Snapshot]) -> list[_Worker]:
    """The workers alive through the window (at its first and last snapshot with the same
    identity: a worker that died in between is another generation), with their accepts
    and CPU over it, and their state at both ends. From those two snapshots alone, O(n):
    a pass over every snapshot cost 8 ms a sample at 256 workers while a skew lasted.

    Over the window's intervals: accepts = total at the end - total at the start + the
    first interval's; CPU likewise from cpu_seconds. Stopped or not polling the listener
    at either end; pinned: one connection held, busy, at both ends and no accept in the
    window (so the same connection throughout)."""
    first, last = win[0], win[-1]
    start = {w.key: w for w in first.live_workers}
    iv = first.interval_s or 0.0
    p0, p1 = ({pid for ln in s.listeners for pid in ln.owners} for s in (first, last))
    rows = []
    for w in last.live_workers:
        a = start.get(w.key)
        if a is None:
            continue
        if w.accepts_total is None or a.accepts_total is None:
            accepts = sum(x.accepts or 0 for s in win for x in s.live_workers if x.key == w.key)
        else:
            accepts = w.accepts_total - a.accepts_total + (a.accepts or 0)
        if w.cpu_seconds is None or a.cpu_seconds is None:
            cpu = 0.0
        else:
            cpu = w.cpu_seconds - a.cpu_seconds + (a.cpu_percent or 0.0) * iv / 100.0
        pinned = not accepts and a.connections == w.connections == 1 and a.busy and w.busy
        rows.append(
            _Worker(
                w.label,
                accepts,
                max(0.0, cpu),
                is_stopped(a) or is_stopped(w),
                pinned,
                bool(p0 and w.pid not in p0) or bool(p1 and w.pid not in p1),
                a.connections or 0,
                w.connections or 0,
                w.age_s,
                full=bool(p1 and w.pid not in p1),
                total=w.accepts_total,
            )
        )
    return rows


def _unable(w: _Worker, span_s: float) -> str | None:
    """Why `w` could take no more connections over the window, if it could not: stopped
    (its queue share waits), not polling the listener for a while (Apache event's child
    at its connection limit takes it out of its epoll), saturated (a core's worth of CPU),
    or pinned (one connection held in every sample and none accepted: a prefork-like
    worker serving a keep-alive client)."""
    if w.stopped:
        return "stopped"
    if w.unpolled:
        return "not polling"
    if span_s > 0 and 100.0 * w.cpu_s / span_s >= SKEW_SATURATED_CPU:
        return "saturated"
    if w.pinned:
        return "busy"
    return None


def _judged(
    rows: list[_Worker], count: Callable[[_Worker], int], span_s: float
) -> tuple[list[_Worker], str]:
    """The workers whose count is judged, and what was left out (", 1 stopped left out"):
    all but those below the mean whose inability explains it (one above the mean is kept:
    a saturated worker taking most is the skew itself, epoll's LIFO wake-ups), and those
    above it that took their listener out of their epoll by the window's end: full by the
    server's own limit (Apache event's child at 75 connections), so the others take the
    next ones: a fill policy, not a worker that goes on taking them all."""
    mean = sum(count(r) for r in rows) / len(rows) if rows else 0.0
    kept, why = [], Counter[str]()
    for r in rows:
        if r.young:  # born after connections it is judged on: not judged on them
            reason: str | None = "born later"
        elif count(r) < mean:
            reason = _unable(r, span_s)
        else:
            reason = "full" if r.full else None
        if reason is None:
            kept.append(r)
        else:
            why[reason] += 1
    out = ", ".join(f"{k} {reason}" for reason, k in sorted(why.items()))
    return kept, f", {out} left out" if out else ""


def skew_p(counts: Sequence[int]) -> float | None:
    """The accept counts' p-value against an even spread when they are enough to judge
    and far from even (the rule fires below evenness.ALPHA), else None."""
    return _test(counts, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER)


def _test(counts: Sequence[int], minimum: int, per_worker: int) -> float | None:
    """The p-value of `counts` when they are enough to judge and far from even, else None."""
    return _test_of(tuple(counts), minimum, per_worker)


@functools.lru_cache(maxsize=64)
def _test_of(counts: tuple[int, ...], minimum: int, per_worker: int) -> float | None:
    # a steady server's counts repeat sample after sample: the exact binomial tail over
    # 500 held connections is ~0.3 ms a call, twice a sample at 250 workers
    n, total = len(counts), sum(counts)
    if n < 2 or total < max(minimum, per_worker * n):
        return None
    squares = sum(c * c for c in counts)
    jain = total * total / (n * squares)
    if jain >= SKEW_MAX_JAIN or n * max(counts) / total < SKEW_MIN_MAX_OVER_MEAN:
        return None
    return evenness.uniform_p(counts)


def _accepts_verdict(win: Sequence[Snapshot]) -> Diagnosis | None:
    """The window's accepts, and the accepts since counted of the top worker against those
    at least as old: a skew that persists, not a window's (Apache event: under burst one
    child took 54% of 261 accepts in a window, p < 1e-9, the hot child changing from
    window to window in that run, its totals even; under keepalive-idle the child filling
    to its limit took most of a window while spares born after it had few since they
    started, having had less time)."""
    span_s = analysis.covered_s(win)
    rows, out = _judged(_workers(win), lambda r: r.accepts, span_s)
    counts = [r.accepts for r in rows]
    p = _test(counts, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER)
    if p is None or p >= evenness.ALPHA:
        return None
    top = max(rows, key=lambda r: r.accepts)
    lifetime = ""
    if all(r.total is not None for r in rows):
        # since counted, the top against the workers born before it or with it: one born
        # later has had less time to accept, so fewer is no evidence against the top
        cohort = _elders(rows, top)
        whole = [r.total or 0 for r in cohort]
        q = _test(whole, SKEW_MIN_ACCEPTS, SKEW_MIN_ACCEPTS_PER_WORKER)
        if q is None or q >= evenness.ALPHA:
            return None
        lifetime = f", {_pct(100 * (top.total or 0) / sum(whole))} of all {sum(whole):,} counted"
    total = sum(counts)
    jain = total * total / (len(counts) * sum(c * c for c in counts))
    return Diagnosis(
        "accept_skew",
        Severity.WARNING,
        f"accept skew: {top.label} took {_pct(100 * top.accepts / total)} of accepts "
        f"(Jain {jain:.2f}, {len(rows)} workers{out}; {evenness.p_text(p)} "
        f"over {total} accepts in {_span(win)}{lifetime}){explain.skew(win[-1])}",
    )


def _elders(rows: list[_Worker], top: _Worker) -> list[_Worker]:
    """`top` and the workers at least as old (born before it, or within SKEW_YOUNGER_S
    after it): each has had at least top's time to accept. Age unknown: counted in."""
    if top.age_s is None:
        return rows
    least = top.age_s - SKEW_YOUNGER_S
    return [r for r in rows if r is top or r.age_s is None or r.age_s >= least]


def _held_verdict(win: Sequence[Snapshot]) -> Diagnosis | None:
    """Connections held at both ends of the window, among the workers that could have
    accepted every one of them: those born with the oldest holder (within SKEW_YOUNGER_S:
    a pool forked at once). A held connection was accepted after its holder was born, so
    after the oldest holder's birth, when these were all there; a worker born later may
    have missed some (Apache's children spawned while the first ones filled: spares
    holding none read 75/75/75/75/0/0, "holds 25% of open connections"; under overload
    "holds 32% ... 9 workers", the pool growing all along)."""
    span_s = analysis.covered_s(win)
    rows = _workers(win)
    ages = [r.age_s for r in rows if r.last > 0 and r.age_s is not None]
    oldest = max(ages) if ages else None  # once: in the loop it was n^2 (250 workers)
    for r in rows:
        if oldest is not None and r.age_s is not None:
            r.young = r.age_s < oldest - SKEW_YOUNGER_S
    rows, out = _judged(rows, lambda r: r.last, span_s)
    ps = [
        _test([at(r) for r in rows], SKEW_MIN_CONNECTIONS, SKEW_MIN_CONNECTIONS_PER_WORKER)
        for at in _ENDS
    ]
    if any(p is None or p >= evenness.ALPHA for p in ps):
        return None
    counts = [r.last for r in rows]
    total = sum(counts)
    top = max(rows, key=lambda r: r.last)
    jain = total * total / (len(counts) * sum(c * c for c in counts))
    p = max(p for p in ps if p is not None)
    return Diagnosis(
        "accept_skew",
        Severity.WARNING,
        f"accept skew: {top.label} holds {_pct(100 * top.last / total)} of open connections "
        f"(Jain {jain:.2f}, {len(rows)} workers{out}; {evenness.p_text(p)} over "
        f"{total} connections, held through {_span(win)}){explain.skew(win[-1])}",
    )
