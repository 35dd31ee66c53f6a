"""The CPU limit and throttling of the cgroups the server's processes live in, for the
Prometheus export (values.cgroupcpu, read from cpu.max / cpu.cfs_quota_us and cpu.stat).

Per cgroup, labelled model and cgroup (its path as /proc/PID/cgroup names it; the names are
values.series, which the fleet reads back):
`serverscope_cgroup_cpu_limit_cores` (absent without a limit: no limit is not 0 cores),
the limiting cgroup's `serverscope_cgroup_cpu_periods_total`,
`serverscope_cgroup_cpu_throttled_periods_total`, `serverscope_cgroup_cpu_throttled_seconds_total`
(absent when cpu.stat does not count them), and `serverscope_cgroup_processes`.
`rate(..._throttled_periods_total[1m]) / rate(..._periods_total[1m])` is the throttled
share the diagnosis reads.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from values import series as names
from values.snapshot import Snapshot

LABELS = ("model", "cgroup")


def _model(snap: Snapshot, pids: tuple[int, ...]) -> str:
    """The workers' model label (as the worker series: the process name when attached)."""
    model = snap.model.name if snap.model is not None else ""
    if model and model != "attached":
        return model
    named = next((w.name for w in snap.workers if w.pid in pids and w.name), "")
    return named or model or "unknown"


def cgroup_metrics(snap: Snapshot) -> Iterator[Metric]:
    if not snap.cpu_cgroups:
        return
    limit = GaugeMetricFamily(
        names.LIMIT_CORES,
        "CPU limit on the cgroup (the tightest quota on its path: cpu.max, or "
        "cpu.cfs_quota_us / cpu.cfs_period_us), in cores; absent without a limit.",
        labels=LABELS,
    )
    periods = CounterMetricFamily(
        names.PERIODS,
        "Quota periods in which the limiting cgroup had runnable tasks (cpu.stat nr_periods).",
        labels=LABELS,
    )
    throttled = CounterMetricFamily(
        names.THROTTLED_PERIODS,
        "Quota periods in which the limiting cgroup ran out of quota (cpu.stat nr_throttled).",
        labels=LABELS,
    )
    seconds = CounterMetricFamily(
        names.THROTTLED_SECONDS,
        "Time the limiting cgroup's tasks spent throttled (cpu.stat throttled_time / "
        "throttled_usec), seconds.",
        labels=LABELS,
    )
    processes = GaugeMetricFamily(
        names.PROCESSES,
        "The server's sampled processes in the cgroup.",
        labels=LABELS,
    )
    for cg in snap.cpu_cgroups:
        labels = [_model(snap, cg.pids), cg.path]
        if cg.cores is not None:
            limit.add_metric(labels, cg.cores)
        if cg.nr_periods is not None:
            periods.add_metric(labels, cg.nr_periods)
        if cg.nr_throttled is not None:
            throttled.add_metric(labels, cg.nr_throttled)
        if cg.throttled_s is not None:
            seconds.add_metric(labels, cg.throttled_s)
        processes.add_metric(labels, len(cg.pids))
    yield from (limit, periods, throttled, seconds, processes)
