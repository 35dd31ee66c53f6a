"""The names of serverscope's Prometheus series: declared once, for the exporter that
writes them (export.prometheus, export.identity, export.cgroup_metrics) and the fleet that
reads them back (lab.fleet_source), so neither can look for a name the other does not
have. These are the published names (docs/prometheus.md, docs/cpu-limits.md, the alert
rules and the Grafana dashboard).

A counter is named here by its family, as prometheus_client declares it; its series carries
`_total` (`series(PERIODS)`). Each name's unit and source are in the exporter's help text.
"""

from __future__ import annotations

# the snapshot and the server it watches
SNAPSHOT_TS = "serverscope_snapshot_timestamp_seconds"  # gauge: wall-clock time, s
SERVER_INFO = "serverscope_server_info"  # gauge 1: host, server, program, root_pid, ports

# per worker (labels: model, pid, tid, role, worker)
WORKER = "serverscope_worker_"  # the prefix of the five below
WORKER_CPU = WORKER + "cpu_seconds"  # counter: user+system CPU, s
WORKER_CONNECTIONS = WORKER + "open_connections"  # gauge: connections held open
WORKER_ACCEPTS = WORKER + "accepts"  # counter: connections accepted
WORKER_REQUESTS = WORKER + "requests"  # counter: requests served
WORKER_STATE = WORKER + "state"  # gauge 1, the state label

# per listener (labels: address, port, listener)
LISTENER_QUEUE = "serverscope_listener_queue_"  # the prefix of the two below
QUEUE_LENGTH = LISTENER_QUEUE + "length"  # gauge: accept queue (ss Recv-Q)
QUEUE_LIMIT = LISTENER_QUEUE + "limit"  # gauge: its limit (ss Send-Q)
MECHANISM = "serverscope_listener_mechanism"  # gauge 1: spread, wake
WAITERS = "serverscope_listener_waiters"  # gauge: processes or threads waiting on it

# the network namespace's counters (not this server's alone)
LISTEN_OVERFLOWS = "serverscope_kernel_listen_overflows"  # counter: TcpExt ListenOverflows
LISTEN_DROPS = "serverscope_kernel_listen_drops"  # counter: TcpExt ListenDrops

# the imbalance over the workers in the window (label: metric)
IMBALANCE = "serverscope_imbalance_"  # the prefix of the five below
IMBALANCE_JAIN = IMBALANCE + "jain"  # gauge: 1/n .. 1
IMBALANCE_TOP_SHARE = IMBALANCE + "top_share"  # gauge: 0 .. 1
IMBALANCE_WINDOW = IMBALANCE + "window_seconds"  # gauge: s
IMBALANCE_WORKERS = IMBALANCE + "workers"  # gauge: workers the indices cover
IMBALANCE_TOTAL = IMBALANCE + "total"  # gauge: the quantity summed over them

DIAGNOSIS = "serverscope_diagnosis_active"  # gauge 1 or 0 (labels: rule, severity)
PHASE = "serverscope_phase_seconds"  # histogram (label: phase)

# a cgroup's CPU limit and throttling (labels: model, cgroup)
LIMIT_CORES = "serverscope_cgroup_cpu_limit_cores"  # gauge, cores; absent without a limit
PERIODS = "serverscope_cgroup_cpu_periods"  # counter: cpu.stat nr_periods
THROTTLED_PERIODS = "serverscope_cgroup_cpu_throttled_periods"  # counter: nr_throttled
THROTTLED_SECONDS = "serverscope_cgroup_cpu_throttled_seconds"  # counter: throttled time, s
PROCESSES = "serverscope_cgroup_processes"  # gauge: the server's sampled processes in it


def series(counter: str) -> str:
    """The series a counter family is scraped as: `PERIODS` -> `..._periods_total`."""
    return f"{counter}_total"
