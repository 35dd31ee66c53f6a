"""The GIL-cap rule: threads of one CPython process share one core while cores idle (a pure
rule over the window, see judging.diagnosis)."""

from __future__ import annotations

from collections.abc import Sequence

from values.findings import Diagnosis, Severity
from values.snapshot import Snapshot

from .rulekit import PHASE_MIN_COUNT, window_phase
from .rulekit import live as _live
from .rulekit import mean as _mean
from .rulekit import num as _num
from .rulekit import p as _p
from .rulekit import pct as _pct

# GIL cap: a thread model's process near one core, several threads busy, cores idle.
GIL_MIN_PROCESS_CPU = 80.0  # process CPU, % of one core (mean over the window) ...
GIL_MAX_PROCESS_CPU = 125.0  # ... and not above ~one core
GIL_MIN_ACTIVE_THREADS = 2  # threads that are busy or use CPU
GIL_THREAD_ACTIVE_CPU = 5.0  # a thread using more than this (% of one core) is active
GIL_MIN_IDLE_CORES = 0.5  # host's idle cores (mean over the window)


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
