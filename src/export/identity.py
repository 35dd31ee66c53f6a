"""What a fleet needs beside the per-host figures (export.prometheus renders these too).

- `serverscope_server_info{host,server,program,root_pid,ports,accepts} 1`: which server this
  exporter watches, named without Prometheus's `instance` (a scrape address, which says
  nothing to a reader and changes with the network): the host name (the exporter's, as
  `uname -n`: in a container, the container's), what the server is (`apache-prefork`,
  `gunicorn-sync`, a lab model's name), its executable, its root pid and its listening
  ports; `accepts` says how the accepts are counted (`exact` eBPF, `estimate`, or
  `scoreboard` for the lab's own models), so a reader knows what an accept share rests on.
- `serverscope_imbalance_workers{metric}` and `serverscope_imbalance_total{metric}`: the
  workers and the events (accepts, mean open connections, CPU seconds) behind each
  imbalance index: a top share means nothing without how many shared it, and `fleet`
  judges a spread only when there were enough events (diagnosis.enough_to_judge).

Kept apart from prometheus.py (the collector) to keep that module under ~400 lines.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from values import series as names
from values.snapshot import Snapshot

SERVER_INFO_LABELS = ("host", "server", "program", "root_pid", "ports", "accepts")


def host_name() -> str:
    return socket.gethostname() or "unknown"


def accepts_method(snap: Snapshot) -> str:
    m = snap.model
    method = m.accepts_method if m is not None else None
    if method is None:
        return "scoreboard" if snap.source != "attach" else "unknown"
    return "exact" if method.startswith("exact") else "estimate"


def server_name(snap: Snapshot) -> str:
    """What the server is: the attached tree's kind, else its executable, else the model."""
    m = snap.model
    if m is None:
        return "unknown"
    if m.server:
        return m.server
    if m.name and m.name != "attached":
        return m.name
    return m.program or "unknown"


def server_info(snap: Snapshot, host: str) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        names.SERVER_INFO,
        "1, naming the server this exporter watches: host (this exporter's host name), "
        "server (its kind or the lab's model), program (its executable), root_pid, ports "
        "(its listening ports) and accepts (how they are counted: exact, estimate, "
        "scoreboard).",
        labels=SERVER_INFO_LABELS,
    )
    m = snap.model
    ports = ",".join(str(p) for p in sorted({ln.port for ln in snap.listeners}))
    info.add_metric(
        [
            host,
            server_name(snap),
            (m.program if m is not None else None) or "",
            str(m.root_pid) if m is not None else "",
            ports,
            accepts_method(snap),
        ],
        1.0,
    )
    yield info


def imbalance_basis(snap: Snapshot) -> Iterator[Metric]:
    workers = GaugeMetricFamily(
        names.IMBALANCE_WORKERS,
        "Workers the imbalance indices of the quantity are computed over (alive through "
        "the window).",
        labels=("metric",),
    )
    total = GaugeMetricFamily(
        names.IMBALANCE_TOTAL,
        "The quantity summed over those workers in the window: accepts (count), "
        "connections (mean open), cpu (CPU seconds).",
        labels=("metric",),
    )
    for name, imb in snap.imbalance.items():
        if imb is None:
            continue
        workers.add_metric([name], imb.n)
        total.add_metric([name], imb.total)
    yield from (workers, total)
