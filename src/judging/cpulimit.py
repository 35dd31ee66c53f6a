"""Rules about a cgroup CPU limit (Snapshot.cpu_cgroups): workers throttled by their limit
while the host has cores to spare, and more workers busy than the limit allows cores
(a worker count set from the host's cores, not the container's limit: envoy #38768).

The evidence is the limiting cgroup's own counters (cpu.stat: periods with runnable tasks,
periods that ran out of quota), summed over the window: a throttled share judged against
a tolerated baseline with a binomial test (evenness.binom_sf, p < ALPHA), and persistent
(throttled in most of the window's samples, over at least MIN_SPAN_S), so a burst does not
name a limit. Pure functions of the window, as every rule in `diagnosis` (RULES lists them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from values.cgroupcpu import CpuLimit, cores_text
from values.findings import Diagnosis, Severity
from values.snapshot import Snapshot, WorkerSample, WorkerState

from . import evenness
from .rulekit import live as _live
from .rulekit import mean as _mean
from .rulekit import num as _num
from .rulekit import pct as _pct

__all__ = ["MIN_SPAN_S", "Throttling", "cpu_oversubscribed", "cpu_throttled", "throttling"]

THROTTLE_MIN_SPAN_S = 2.0  # seconds of measurement of the cgroup behind a judgement
THROTTLE_MIN_PERIODS = 10  # quota periods with runnable tasks in the window (1 s at 100 ms)
THROTTLE_BASELINE = 0.05  # a throttled share tolerated as chance (a burst at a period's
# end); the window's share must exceed it at p < evenness.ALPHA ...
THROTTLE_MIN_FRACTION = 0.10  # ... and be at least this
THROTTLE_PERSIST = 0.5  # of the window's samples with periods, this share saw throttling
IDLE_MIN_CORES = 0.5  # host's idle cores (mean over the window) for "while cores idle"
RUNNING_STATES = frozenset({WorkerState.WORKING, WorkerState.WRITING})  # using the CPU
RUNNING_MIN_CPU = 1.0  # % of one core: an attached worker with no state letter read runs
OVERSUB_PERSIST = 0.8  # of the window's samples, this share had more running than cores
MIN_SPAN_S = {"cpu_throttled": THROTTLE_MIN_SPAN_S, "cpu_oversubscribed": THROTTLE_MIN_SPAN_S}


@dataclass(frozen=True, slots=True)
class Throttling:
    """One limiting cgroup over the window, as its cpu.stat counted it."""

    limit: CpuLimit  # the latest reading
    cores: float
    periods: int  # periods with runnable tasks in the window
    throttled: int  # ... of which it ran out of quota
    throttled_s: float  # seconds its tasks waited throttled in the window
    span_s: float  # seconds of measurement
    persist: float  # share of samples with periods that saw throttling
    p: float  # P(this many throttled periods | THROTTLE_BASELINE)

    @property
    def fraction(self) -> float:
        return self.throttled / self.periods if self.periods else 0.0

    @property
    def significant(self) -> bool:
        return (
            self.span_s >= THROTTLE_MIN_SPAN_S - 1e-6
            and self.periods >= THROTTLE_MIN_PERIODS
            and self.fraction >= THROTTLE_MIN_FRACTION
            and self.persist >= THROTTLE_PERSIST
            and self.p < evenness.ALPHA
        )


def throttling(win: Sequence[Snapshot]) -> list[Throttling]:
    """Each limited cgroup holding live workers in the latest snapshot, over the window."""
    if not win:
        return []
    last = win[-1]
    workers = {w.pid for w in _live(last)}
    out = []
    for cg in last.cpu_cgroups:
        cores = cg.cores
        if cores is None or not workers.intersection(cg.pids):
            continue
        periods = throttled = with_periods = seen_throttled = 0
        throttled_s, span = 0.0, 0.0
        for s in win:
            same = next((c for c in s.cpu_cgroups if c.path == cg.path), None)
            if same is None or same.periods_delta is None or same.throttled_delta is None:
                continue
            span += s.interval_s or 0.0
            periods += same.periods_delta
            throttled += same.throttled_delta
            throttled_s += same.throttled_s_delta or 0.0
            if same.periods_delta:
                with_periods += 1
                seen_throttled += same.throttled_delta > 0
        p = evenness.binom_sf(throttled, periods, THROTTLE_BASELINE) if periods else 1.0
        persist = seen_throttled / with_periods if with_periods else 0.0
        out.append(Throttling(cg, cores, periods, throttled, throttled_s, span, persist, p))
    return out


def _workers_in(s: Snapshot, cg: CpuLimit) -> list[WorkerSample]:
    pids = set(cg.pids)
    return [w for w in _live(s) if w.pid in pids]


def _where(cg: CpuLimit) -> str:
    return f"cgroup {cg.limit_path or cg.path}"


def cpu_throttled(win: Sequence[Snapshot]) -> Diagnosis | None:
    """The limit throttles the workers while the host has idle cores: requests wait for
    the next period though CPU is free (raise the limit, or fewer, cheaper requests)."""
    found = [t for t in throttling(win) if t.significant]
    if not found:
        return None
    idle = [s.host.idle_cores for s in win if s.host and s.host.idle_cores is not None]
    if not idle or _mean(idle) < IDLE_MIN_CORES:
        return None
    t = max(found, key=lambda x: x.fraction)
    n = len(_workers_in(win[-1], t.limit))
    idle_cores = _mean(idle)
    return Diagnosis(
        "cpu_throttled",
        Severity.WARNING,
        f"CPU limit {cores_text(t.cores)}: {n} worker{'s' if n != 1 else ''} throttled in "
        f"{_pct(100 * t.fraction)} of periods ({t.throttled}/{t.periods}, "
        f"{evenness.p_text(t.p)}), {t.throttled_s:.1f} s throttled (summed over CPUs) in "
        f"{_num(t.span_s)} s, "
        f"while {_num(idle_cores)} {'core' if _num(idle_cores) == '1' else 'cores'} idle "
        f"({_where(t.limit)})",
    )


def _running(w: WorkerSample) -> bool:
    """Using (or waiting for) the CPU now: the scoreboard's W or the /proc state R (a
    throttled task stays R); without either, CPU used in the interval."""
    if w.state in RUNNING_STATES or w.proc_state == "R":
        return True
    unread = w.state == WorkerState.UNKNOWN and w.proc_state is None
    return unread and (w.cpu_percent or 0.0) >= RUNNING_MIN_CPU


def cpu_oversubscribed(win: Sequence[Snapshot]) -> Diagnosis | None:
    """More workers busy than the limit allows cores, and the limit throttles them: they
    take turns on ceil(limit) cores' worth of time, each request stretched by the others."""
    for t in sorted(throttling(win), key=lambda x: -x.fraction):
        if not t.significant:
            continue
        allowed = max(1, math.ceil(t.cores - 1e-9))
        counts = [len([w for w in _workers_in(s, t.limit) if _running(w)]) for s in win]
        over = sum(c > allowed for c in counts)
        if not counts or over < OVERSUB_PERSIST * len(counts):
            continue
        busy = _mean([float(c) for c in counts])
        share = t.cores / busy
        return Diagnosis(
            "cpu_oversubscribed",
            Severity.WARNING,
            f"more busy workers than the CPU limit allows cores: {_num(busy)} workers busy "
            f"on average under a limit of {cores_text(t.cores)}, ~{share:.2g} core each, "
            f"throttled in "
            f"{_pct(100 * t.fraction)} of periods ({_where(t.limit)}); run at most "
            f"{allowed} worker{'s' if allowed != 1 else ''} or raise the limit",
        )
    return None
