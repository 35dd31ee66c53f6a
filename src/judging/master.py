"""The master-bottleneck rule: a master that deals the connections out saturates one core
while its workers idle (a pure rule over the window, see judging.diagnosis)."""

from __future__ import annotations

from collections.abc import Sequence

from values.findings import Diagnosis, Severity
from values.snapshot import Snapshot

from . import explain
from .rulekit import PHASE_MIN_COUNT, window_phase
from .rulekit import live as _live
from .rulekit import mean as _mean
from .rulekit import p as _p
from .rulekit import pct as _pct

# master bottleneck: a dispatching master (explain.dispatching) near one core, its workers not.
MASTER_MIN_CPU = 80.0  # master's mean CPU over the window, % of one core
MASTER_MAX_WORKER_CPU = 50.0  # workers' mean CPU, % of one core each


def master_bottleneck(win: Sequence[Snapshot]) -> Diagnosis | None:
    """A dispatching master (explain.dispatching) saturates one core while its workers idle."""
    if not win:
        return None
    last = win[-1]
    if last.model is None:
        return None
    if not explain.dispatching(win):
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


def _master_own_cpu(s: Snapshot) -> float:
    """The root process's CPU minus that of worker threads living in it (goroutines: the
    event loops are threads of the root, so its process CPU is not the master's own)."""
    assert s.model is not None and s.model.master_cpu_percent is not None
    root = s.model.root_pid
    inside = sum(w.cpu_percent or 0.0 for w in _live(s) if w.is_thread and w.pid == root)
    return max(0.0, s.model.master_cpu_percent - inside)
