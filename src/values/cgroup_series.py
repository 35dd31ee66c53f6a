"""The names of the Prometheus series of a cgroup's CPU limit and throttling: declared once,
for the exporter that writes them (export.cgroup_metrics) and the fleet that reads them back
(lab.fleet_source), so neither can look for a name the other does not have. These are the
published names (docs/cpu-limits.md, the alert rules and the Grafana dashboard).

A counter is named here by its family, as prometheus_client declares it; its series carries
`_total` (`series(PERIODS)`). Labels: model, cgroup.
"""

from __future__ import annotations

__all__ = [
    "LIMIT_CORES",
    "PERIODS",
    "PROCESSES",
    "THROTTLED_PERIODS",
    "THROTTLED_SECONDS",
    "series",
]

LIMIT_CORES = "serverscope_cgroup_cpu_limit_cores"  # gauge, cores; absent without a limit
PERIODS = "serverscope_cgroup_cpu_periods"  # counter: cpu.stat nr_periods
THROTTLED_PERIODS = "serverscope_cgroup_cpu_throttled_periods"  # counter: nr_throttled
THROTTLED_SECONDS = "serverscope_cgroup_cpu_throttled_seconds"  # counter: throttled time, s
PROCESSES = "serverscope_cgroup_processes"  # gauge: the server's sampled processes in it


def series(counter: str) -> str:
    """The series a counter family is scraped as: `PERIODS` -> `..._periods_total`."""
    return f"{counter}_total"
