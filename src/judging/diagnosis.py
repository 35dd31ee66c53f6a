"""Diagnosis: rules over a window of recent snapshots, each naming one phenomenon in one line.

Every rule is a pure function `rule(window) -> Diagnosis | None` over the snapshots of the
recent window (oldest first, the latest last; see `analysis.window`), with no I/O, so each
can be fired and silenced with synthetic snapshots. Thresholds are module constants.
Hand-written: the phenomena and their thresholds are this project's, no library has them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from values.findings import Diagnosis, Severity, severity_rank
from values.snapshot import Hold, Snapshot, WorkerSample, WorkerState
from values.units import ADMITS_ONE_MORE, queue_figure

from . import analysis, cpulimit, explain
from .cpulimit import cpu_oversubscribed, cpu_throttled
from .gil import gil_cap
from .master import master_bottleneck
from .rulekit import PHASE_MIN_COUNT, Rule, window_phase
from .rulekit import live as _live
from .rulekit import mean as _mean
from .rulekit import p as _p
from .rulekit import pct as _pct
from .rulekit import span as _span
from .server_wait import server_wait
from .skew import (
    SKEW_MAX_JAIN,
    SKEW_MIN_ACCEPTS,
    SKEW_MIN_ACCEPTS_PER_WORKER,
    SKEW_MIN_CONNECTIONS,
    SKEW_MIN_CONNECTIONS_PER_WORKER,
    SKEW_MIN_MAX_OVER_MEAN,
    SKEW_MIN_SPAN_S,
    SPREAD_MIN_CPU_SECONDS,
    accept_skew,
    enough_to_judge,
)
from .stalled import (
    REUSEPORT_MIN_QUEUE,
    REUSEPORT_OTHERS_FRACTION,
    reuseport_backlog,
    stalled_owner,
)

__all__ = [
    "HOLD_S",
    "REUSEPORT_MIN_QUEUE",
    "REUSEPORT_OTHERS_FRACTION",
    "RULES",
    "SKEW_MAX_JAIN",
    "SKEW_MIN_ACCEPTS",
    "SKEW_MIN_ACCEPTS_PER_WORKER",
    "SKEW_MIN_CONNECTIONS",
    "SKEW_MIN_CONNECTIONS_PER_WORKER",
    "SKEW_MIN_MAX_OVER_MEAN",
    "SPREAD_MIN_CPU_SECONDS",
    "Memory",
    "Rule",
    "accept_skew",
    "diagnose",
    "enough_to_judge",
    "reuseport_backlog",
    "stalled_owner",
    "window_phase",
]

# starvation: every worker holds a connection, the CPU is idle, and clients queue.
STARVATION_MIN_S = 1.0  # all workers busy for at least this long (in every snapshot)
STARVATION_MAX_CPU_FRACTION = 0.30  # workers' CPU below this fraction of the cores they
# can use, min(cores, workers): one worker serving 9,298 req/s at half a core on 2 cores
# is busy serving (overflow), not starving, though it is only 25% of the machine
STARVATION_MIN_QUEUE = 1  # connections waiting in the accept queue(s) now
STARVATION_MIN_IDLE_HOLD = 0.5  # of the worker samples, at least this fraction hold an
# idle connection (keep-alive wait, or waiting for a request's bytes): starvation is
# workers pinned by clients that send nothing, not workers busy serving
IDLE_HOLD_STATES = frozenset({WorkerState.KEEPALIVE, WorkerState.READING})
# how the starvation line names what pins the workers (snapshot.Hold, read from each
# socket when attached; else the scoreboard's K or R)
HOLD_WORDS: dict[Hold | None, str] = {
    Hold.KEEPALIVE: "hold idle keep-alive connections",  # a response went out, nothing since
    Hold.PARTIAL: "hold requests that stopped half-way, bytes in and no response yet",
    Hold.SILENT: "hold connections silent since they opened",
    None: "hold idle connections",
}
READING_WORDS = "hold requests still arriving"  # the scoreboard's R: some bytes or none yet

# how long a window each rule needs before it can fire (`attach --once` samples that long)
MIN_SPAN_S: dict[str, float] = {"starvation": STARVATION_MIN_S, "accept_skew": SKEW_MIN_SPAN_S}


# accept queue overflow: one of our queues reached its limit within the window, or the
# (namespace-wide) overflow counter moved while one of ours was at least this full.
OVERFLOW_NEAR_FULL = 0.9


def starvation(win: Sequence[Snapshot]) -> Diagnosis | None:
    """Every worker pinned by a connection it holds idle (keep-alive), CPU idle, clients
    queued. Workers busy serving with a full queue are overflow, not starvation."""
    if not win:
        return None
    last = win[-1]
    recent = [s for s in win if s.time >= last.time - STARVATION_MIN_S]
    if analysis.covered_s(recent) < STARVATION_MIN_S - 1e-6:
        return None
    for s in recent:
        live = _live(s)
        if not live or any(w.state == WorkerState.UNKNOWN or not w.busy for w in live):
            return None
        # a worker holding several connections multiplexes (an event loop, event's
        # listener): it is not pinned, so busy states do not mean it cannot accept
        if any((w.connections or 0) > 1 for w in live):
            return None
        # clients must have been queueing the whole time, not at one unlucky instant
        if s.queue < STARVATION_MIN_QUEUE:
            return None
    n = len(_live(last))
    cores = min(last.host.cpu_count if last.host else 1, max(1, n))
    cpu = _mean([sum(w.cpu_percent or 0.0 for w in _live(s)) for s in recent])
    frac = cpu / (100.0 * cores)
    if frac >= STARVATION_MAX_CPU_FRACTION:
        return None
    states = [w.state for s in recent for w in _live(s)]
    if sum(st in IDLE_HOLD_STATES for st in states) < STARVATION_MIN_IDLE_HOLD * len(states):
        return None
    lim = last.queue_limit
    queue = f"accept queue {queue_figure(last.queue, lim)}"
    drops = [s.kernel.drops_per_s for s in recent if s.kernel and s.kernel.drops_per_s is not None]
    drop_text = f", {_mean(drops):.0f} SYN drops/s" if drops and _mean(drops) >= 0.5 else ""
    scoreboard = last.source != "attach"
    hold, held = _what_holds(_live(last), scoreboard=scoreboard)
    wait = window_phase(last, "queue")
    measured = last.window_phases is not None and last.window_phases.queue is not None
    if measured and wait is None:  # queue wait is timed at accept(): none in the window
        head = f"starvation: no connection accepted in {_span(win)} while {n}/{n} workers {held}"
    elif wait is not None:  # the connections accepted in the window: how long they queued
        # (the tail first: those a freed worker took were lucky, the rest wait that long)
        head = (
            f"starvation: new connections wait {_p(wait, 0.99)} (p99) in the accept queue "
            f"while {n}/{n} workers {held}"
        )
    else:  # (the lab's own models measure queue wait: this is an attach without eBPF)
        head = f"starvation: {n}/{n} workers busy" + ("" if scoreboard else f": they {held}")
    return Diagnosis(
        "starvation",
        Severity.CRITICAL,
        f"{head}, CPU {_pct(100 * frac)}, {queue}{drop_text}{explain.starvation(last, hold)}",
    )


def _what_holds(live: Sequence[WorkerSample], *, scoreboard: bool) -> tuple[Hold | None, str]:
    """What pins most of the workers and the words for it: each worker's `hold` (its
    socket's tcp_info, attached) or else its state (the scoreboard's K: keep-alive; its
    R: waiting for request bytes, whether none or some came is not known; an attached
    READING from outside only says it sleeps on its one connection)."""
    holds = [w.hold or (Hold.KEEPALIVE if w.state == WorkerState.KEEPALIVE else None) for w in live]
    top, count = Counter(holds).most_common(1)[0] if holds else (None, 0)
    if top is not None and 2 * count > len(holds):
        return top, HOLD_WORDS[top]
    if scoreboard:  # the scoreboard's R over K: requests still arriving (slow clients:
        # mod_reqtimeout's case, not KeepAliveTimeout's), a request half-way to the fix
        states = [w.state for w in live]
        if states.count(WorkerState.READING) > states.count(WorkerState.KEEPALIVE):
            return Hold.PARTIAL, READING_WORDS
    return None, HOLD_WORDS[None]


def accept_queue_overflow(win: Sequence[Snapshot]) -> Diagnosis | None:
    """An accept queue is full: the kernel drops handshakes, clients retry after ~1 s, 3 s."""
    if not win:
        return None
    full = None
    fullest = None
    for s in win:
        for ln in s.listeners:
            if ln.full and (full is None or s.time >= full[0].time):
                full = (s, ln)
            if ln.limit and (fullest is None or ln.fill > fullest.fill):
                fullest = ln
    overflows = sum(s.kernel.overflows_delta or 0 for s in win if s.kernel)
    span = analysis.covered_s(win) or 1.0
    ovf = f", {overflows / span:.0f} ListenOverflows/s (namespace-wide)" if overflows else ""
    wait = window_phase(win[-1], "queue", PHASE_MIN_COUNT)
    if wait is not None:  # what the connections that got in paid for it
        ovf += f"; accepted connections waited {_p(wait, 0.99)} in the queue at p99"
    if full is not None:
        _, ln = full
        admits = f"; {ADMITS_ONE_MORE}" if ln.past_limit else ""
        return Diagnosis(
            "accept_queue_overflow",
            Severity.CRITICAL,
            f"accept queue overflow: port {ln.port} queue {ln.queue}/{ln.limit} "
            f"(full within {_span(win)}{admits}){ovf}",
        )
    if overflows and fullest is not None and fullest.fill >= OVERFLOW_NEAR_FULL:
        return Diagnosis(
            "accept_queue_overflow",
            Severity.CRITICAL,
            f"accept queue overflow: port {fullest.port} queue "
            f"{queue_figure(fullest.queue, fullest.limit)}{ovf}",
        )
    return None


# a stopped worker first: its queue's clients wait on it, and its missing accepts are why
# the others take them all; starvation before overflow: when both fire, the workers hold
# idle connections with the CPU idle, and that is why the queue overflows (when they are
# busy serving, starvation does not fire and overflow is the name); diagnose() keeps this
# order within a severity
RULES: tuple[Rule, ...] = (
    stalled_owner,
    starvation,
    accept_queue_overflow,
    accept_skew,
    master_bottleneck,
    server_wait,
    gil_cap,
    reuseport_backlog,
    cpu_throttled,
    cpu_oversubscribed,
)
MIN_SPAN_S.update(cpulimit.MIN_SPAN_S)


def diagnose(win: Sequence[Snapshot], rules: Sequence[Rule] = RULES) -> list[Diagnosis]:
    """Every rule that fires over the window, most severe first."""
    return _ordered([d for rule in rules if (d := rule(win)) is not None])


# hysteresis: a phenomenon stays named this long after its evidence was last seen, so the
# banner does not flicker off for a sample (seen: "no phenomenon right now, 20/20 workers
# busy" with prefork's queue at 280/511 in the middle of starvation)
HOLD_S = 3.0


class Memory:
    """Diagnoses with memory: `update(now, found)` returns what fired now plus what fired
    within the last `hold_s` seconds, in `diagnose`'s order. A held one keeps its last
    message, marked "(last seen N s ago)": its numbers are that old (a worker it names may
    have died since)."""

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self._last: dict[str, tuple[Diagnosis, float]] = {}

    def update(self, now: float, found: Sequence[Diagnosis]) -> list[Diagnosis]:
        for d in found:
            self._last[d.rule] = (d, now)
        for rule in [r for r, (_, t) in self._last.items() if now - t >= self.hold_s]:
            del self._last[rule]
        out = []
        for d, t in self._last.values():
            if t < now:
                ago = max(1, round(now - t))
                d = dataclasses.replace(d, message=f"{d.message} (last seen {ago} s ago)")
            out.append(d)
        return _ordered(out)


def _ordered(found: Sequence[Diagnosis]) -> list[Diagnosis]:
    """Most severe first; within a severity, in RULES order (the explaining one first)."""
    rank = {r.__name__: i for i, r in enumerate(RULES)}
    return sorted(found, key=lambda d: (severity_rank(d.severity), rank.get(d.rule, len(rank))))
