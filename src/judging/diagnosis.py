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

from values.snapshot import (
    ADMITS_ONE_MORE,
    Diagnosis,
    Hold,
    Severity,
    Snapshot,
    WorkerSample,
    WorkerState,
    queue_figure,
)
from values.units import dur

from . import analysis, cpulimit, explain
from .cpulimit import cpu_oversubscribed, cpu_throttled
from .rulekit import Rule, window_phase
from .rulekit import live as _live
from .rulekit import mean as _mean
from .rulekit import num as _num
from .rulekit import p as _p
from .rulekit import pct as _pct
from .rulekit import span as _span
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

# master bottleneck: a dispatching master (cluster) near one core, its workers not.
MASTER_MIN_CPU = 80.0  # master's mean CPU over the window, % of one core
MASTER_MAX_WORKER_CPU = 50.0  # workers' mean CPU, % of one core each

# GIL cap: a thread model's process near one core, several threads busy, cores idle.
GIL_MIN_PROCESS_CPU = 80.0  # process CPU, % of one core (mean over the window) ...
GIL_MAX_PROCESS_CPU = 125.0  # ... and not above ~one core
GIL_MIN_ACTIVE_THREADS = 2  # threads that are busy or use CPU
GIL_THREAD_ACTIVE_CPU = 5.0  # a thread using more than this (% of one core) is active
GIL_MIN_IDLE_CORES = 0.5  # host's idle cores (mean over the window)

# in-server wait (issue 16): requests wait inside the server (a master's hand-off, a parked
# connection, a busy loop) longer than they are served, over enough requests to judge.
PHASE_MIN_COUNT = 20  # requests (or connections) in the window before a phase is cited
WAIT_MIN_COUNT = 100  # requests in the window before in-server wait is judged on its own
# (prefork on a busy 2-core box: p99 15 ms over 25 requests, service p99 12 ms: noise)
WAIT_MIN_P99_MS = 10.0  # the window's in-server wait p99 at least this ...
WAIT_OVER_SERVICE = 2.0  # ... and above this many times the service p99


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


def master_bottleneck(win: Sequence[Snapshot]) -> Diagnosis | None:
    """A dispatching master (cluster) saturates one core while its workers idle."""
    if not win:
        return None
    last = win[-1]
    if last.model is None:
        return None
    dispatching = explain.dispatching(last) or any(
        (s.model.dispatches_delta or 0) > 0 for s in win if s.model
    )
    if not dispatching:
        return None
    master = [_master_own_cpu(s) for s in win if s.model and s.model.master_cpu_percent is not None]
    if not master:
        return None
    mcpu = _mean(master)
    per_worker = [
        _mean([w.cpu_percent for w in _live(s) if w.cpu_percent is not None])
        for s in win
        if any(w.cpu_percent is not None for w in _live(s))
    ]
    wcpu = _mean(per_worker)
    if mcpu < MASTER_MIN_CPU or wcpu > MASTER_MAX_WORKER_CPU:
        return None
    wait = window_phase(last, "server", PHASE_MIN_COUNT)
    handoff = f"; hand-off adds {_p(wait, 0.99)} at p99" if wait is not None else ""
    return Diagnosis(
        "master_bottleneck",
        Severity.WARNING,
        f"master bottleneck: {last.model.name} master {_pct(mcpu)} CPU, workers {_pct(wcpu)}"
        f"{handoff}{explain.master(last)}",
    )


def server_wait(win: Sequence[Snapshot]) -> Diagnosis | None:
    """Requests wait inside the server before a handler starts them longer than they are
    then served (the window's p99s): a master's hand-off (cluster, goroutines' acceptor),
    a parked connection (event), a busy loop, requests pipelined behind others. Left to
    `master_bottleneck` when that fires (it cites the hand-off itself)."""
    if not win:
        return None
    last = win[-1]
    wait = window_phase(last, "server", WAIT_MIN_COUNT)
    service = window_phase(last, "service", PHASE_MIN_COUNT)
    if wait is None:
        return None
    p99 = wait.quantile_ms(0.99) or 0.0
    served = service.quantile_ms(0.99) if service is not None else None
    if p99 < WAIT_MIN_P99_MS or (served is not None and p99 <= WAIT_OVER_SERVICE * served):
        return None
    if master_bottleneck(win) is not None:
        return None
    model = last.model.name if last.model else "the server"
    dispatching = any(
        (s.model.dispatches or 0) > 0 or (s.model.dispatches_delta or 0) > 0 for s in win if s.model
    ) or explain.dispatching(last)
    what = (
        f"{model} master: hand-off adds {_p(wait, 0.99)} at p99"
        if dispatching
        else f"requests wait {_p(wait, 0.99)} inside {model} before a worker starts them (p99)"
    )
    service_text = f", service p99 {_p(service, 0.99)}" if service is not None else ""
    top = _top_waiter(last)
    return Diagnosis(
        "server_wait",
        Severity.WARNING,
        f"in-server wait: {what}{service_text}, {wait.count} requests in {_span(win)}{top}",
    )


def _top_waiter(s: Snapshot) -> str:
    """ ", most at worker 3 (p99 40 ms)" when one worker's in-server wait stands out."""
    per = [
        (h.quantile_ms(0.99) or 0.0, w.label)
        for w in _live(s)
        if w.window_phases is not None
        and (h := w.window_phases.server) is not None
        and h.count >= WAIT_MIN_COUNT // 4
    ]
    if len(per) < 2:
        return ""
    per.sort()
    (top, label), (second, _) = per[-1], per[-2]
    if top < 2 * second:
        return ""
    return f", most at {label} (p99 {dur(top)})"


def _master_own_cpu(s: Snapshot) -> float:
    """The root process's CPU minus that of worker threads living in it (goroutines: the
    event loops are threads of the root, so its process CPU is not the master's own)."""
    assert s.model is not None and s.model.master_cpu_percent is not None
    root = s.model.root_pid
    inside = sum(w.cpu_percent or 0.0 for w in _live(s) if w.is_thread and w.pid == root)
    return max(0.0, s.model.master_cpu_percent - inside)


def gil_cap(win: Sequence[Snapshot]) -> Diagnosis | None:
    """Threads of one CPython process (with the GIL) share one core while cores idle."""
    if not win:
        return None
    last = win[-1]
    if last.model is not None and last.model.gil is False:
        return None
    threads = [w for w in _live(last) if w.is_thread]
    if len(threads) < GIL_MIN_ACTIVE_THREADS:
        return None
    idle = [s.host.idle_cores for s in win if s.host and s.host.idle_cores is not None]
    if not idle or _mean(idle) < GIL_MIN_IDLE_CORES:
        return None
    # process CPU = sum of its thread workers' CPU, per snapshot, mean over the window
    best = None
    for pid in sorted({w.pid for w in threads}):
        # the active threads first: they are the latest snapshot's (O(threads)), while
        # the CPU mean walks the whole window (O(threads x 20 snapshots)), which for 400
        # idle threads was most of a sample's cost (bench/bench_sampler.py)
        active = [
            w
            for w in threads
            if w.pid == pid and (w.busy or (w.cpu_percent or 0.0) > GIL_THREAD_ACTIVE_CPU)
        ]
        if len(active) < GIL_MIN_ACTIVE_THREADS:
            continue
        totals = []
        for s in win:
            ws = [w for w in _live(s) if w.is_thread and w.pid == pid and w.cpu_percent is not None]
            if ws:
                totals.append(sum(w.cpu_percent or 0.0 for w in ws))
        cpu = _mean(totals)
        if not (GIL_MIN_PROCESS_CPU <= cpu <= GIL_MAX_PROCESS_CPU):
            continue
        if best is None or len(active) > best[1]:
            best = (pid, len(active), cpu)
    if best is None:
        return None
    pid, nactive, cpu = best
    idle_cores = _mean(idle)
    cores = "core" if _num(idle_cores) == "1" else "cores"
    service = window_phase(last, "service", PHASE_MIN_COUNT)
    served = ""
    if service is not None:  # the handlers' time stretched by waiting for the GIL
        served = f"; service p50 {_p(service, 0.5)}, p99 {_p(service, 0.99)}"
    return Diagnosis(
        "gil_cap",
        Severity.WARNING,
        f"GIL cap: {nactive} threads share one core (pid {pid} at {_pct(cpu)} CPU), "
        f"{_num(idle_cores)} {cores} idle{served}",
    )


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
    sev = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    rank = {r.__name__: i for i, r in enumerate(RULES)}
    return sorted(found, key=lambda d: (sev.get(d.severity, 3), rank.get(d.rule, len(rank))))
