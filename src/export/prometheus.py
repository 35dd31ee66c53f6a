"""`--export HOST:PORT`: the latest Snapshot as Prometheus / OpenMetrics on `/metrics`.

Why: engineers chasing imbalance in production want the same per-worker truth on every
host, over days, in the dashboards they already have; that is Prometheus's job. So this is
a plain `prometheus_client` custom Collector, not a home-made format.

No second sampler: whoever samples (the Session behind the TUI / `run` / `web`, or the
`attach` loop) hands each new snapshot to `SnapshotExporter.update`, which only swaps a
reference. A scrape renders the latest snapshot it was given; it never reaches back into
the sampler, so a scrape costs the sampler nothing and can never see a half-built sample.

Unknown stays unknown: a figure that is None in the snapshot (no scoreboard when attached:
no accepts; the first sample: no CPU) is left OUT of the exposition, never sent as 0.

What is exported (all names follow Prometheus conventions: base units, `_total` counters):
- per worker, labelled model (model name, or the process name when attached), pid, tid,
  role (worker/listener/master/helper/process; values.snapshot.Role) and
  worker (scoreboard slot, or the position in the snapshot when attached):
  `serverscope_worker_cpu_seconds_total`, `serverscope_worker_open_connections`,
  `serverscope_worker_accepts_total`, `serverscope_worker_requests_total`,
  `serverscope_worker_state{state=...} 1` (the current state only: one series per worker,
  not ten, since the all-states 0/1 form made a 250-worker scrape 3,513 samples and ~34 ms
  against 1,263 samples and ~11 ms this way; `count by (state) (serverscope_worker_state)`
  counts the workers in each state);
- per listener: `serverscope_listener_queue_length`, `serverscope_listener_queue_limit`,
  and how its connections reach the workers, read from /proc, as an info metric
  `serverscope_listener_mechanism{spread,wake} 1` and `serverscope_listener_waiters`
  (both absent when not read);
- the kernel's TcpExt ListenOverflows / ListenDrops as `serverscope_kernel_listen_*_total`,
  NAMESPACE-WIDE (HELP says so: every socket in the network namespace adds to them);
- imbalance over the sliding window, labelled metric=accepts|connections|cpu:
  `serverscope_imbalance_jain`, `serverscope_imbalance_top_share`,
  `serverscope_imbalance_window_seconds`;
- `serverscope_diagnosis_active{rule,severity}`: 1 while a diagnosis fires, 0 for rules
  seen earlier in this process (the one-line message is not a label: its numbers would make
  a new series every sample);
- `serverscope_snapshot_timestamp_seconds` (wall clock of the sample: staleness shows);
- for a fleet (export.identity): `serverscope_server_info{host,server,program,root_pid,
  ports,accepts} 1`, and the workers and events behind each imbalance index,
  `serverscope_imbalance_workers` and `serverscope_imbalance_total`;
- where the time goes, the whole server's request phases since it started as
  one histogram labelled phase=queue|server|service, `serverscope_phase_seconds`
  (`_bucket{le}`, `_count`, `_sum`): 19 fixed buckets from 100 us to 60 s, not the 200 of
  plumbing.loghist (per worker and per bucket that would be 600 series a worker). A
  loghist bucket counts under the first `le` at or above its top, so a value may count one
  boundary late by up to a bucket's width (6.25%); count and sum are exact. A phase the
  snapshot does not measure is absent (attached servers: all but the eBPF queue wait).

Its cost per scrape is measured by bench/bench_export.py (figures: bench/README.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from plumbing.loghist import LogHist, bucket_bounds
from values import series as names
from values.snapshot import STATES, Snapshot, WorkerSample, WorkerState

from .address import ExportAddress, ExportError, parse_address
from .cgroup_metrics import cgroup_metrics
from .identity import host_name, imbalance_basis, server_info

__all__ = [
    "ExportAddress",
    "ExportError",
    "SnapshotCollector",
    "SnapshotExporter",
    "parse_address",
    "role_of",
]

WORKER_LABELS = ("model", "pid", "tid", "role", "worker")
# the phase histogram's upper bounds, seconds (+Inf added)
PHASE_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
)


def phase_buckets(h: LogHist) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs of `h` on PHASE_BUCKETS_S, then +Inf = its count. A
    loghist bucket [low, high) us counts under the first le >= its largest value high-1."""
    out = []
    i = 0
    cum = 0
    ordered = h.buckets
    for le in PHASE_BUCKETS_S:
        le_us = le * 1_000_000
        while i < len(ordered) and bucket_bounds(ordered[i][0])[1] - 1 <= le_us:
            cum += ordered[i][1]
            i += 1
        out.append((floatToGoString(le), float(cum)))
    out.append(("+Inf", float(h.count)))
    return out


def role_of(w: WorkerSample) -> str:
    """The worker's role, as its label value."""
    return w.role.value


def _model_label(snap: Snapshot, w: WorkerSample) -> str:
    model = snap.model.name if snap.model is not None else ""
    if (not model or model == "attached") and w.name:
        return w.name  # attached: name the server by its process name (nginx, gunicorn, ...)
    return model or "unknown"


class SnapshotCollector(Collector):
    """Renders whatever snapshot it was last handed; holds no reference to any sampler."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host or host_name()  # serverscope_server_info's host label
        self._snap: Snapshot | None = None
        self._rules: dict[str, str] = {}  # rule -> severity, every rule seen so far
        self._lock = threading.Lock()

    def update(self, snap: Snapshot) -> None:
        """Called by whoever samples, once per snapshot: a reference swap, nothing more."""
        self._snap = snap

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snap

    def describe(self) -> list[Metric]:
        return []  # families depend on the snapshot; no describe-time collect

    def collect(self) -> Iterator[Metric]:
        snap = self._snap
        if snap is None:
            return
        yield from self._workers(snap)
        yield from self._listeners(snap)
        yield from self._kernel(snap)
        yield from self._imbalance(snap)
        yield from imbalance_basis(snap)
        yield from self._diagnoses(snap)
        yield from server_info(snap, self.host)
        yield from self._phases(snap)
        yield from cgroup_metrics(snap)
        ts = GaugeMetricFamily(
            names.SNAPSHOT_TS,
            "Wall-clock time (Unix seconds) of the snapshot this scrape renders.",
        )
        ts.add_metric([], snap.wall_time)
        yield ts

    def _workers(self, snap: Snapshot) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            names.WORKER_CPU,
            "User+system CPU seconds used by the worker (its thread, or its process), "
            "from /proc schedstat.",
            labels=WORKER_LABELS,
        )
        conns = GaugeMetricFamily(
            names.WORKER_CONNECTIONS,
            "Connections the worker holds open (scoreboard; psutil when attached).",
            labels=WORKER_LABELS,
        )
        accepts = CounterMetricFamily(
            names.WORKER_ACCEPTS,
            "Connections the worker accepted since it started (scoreboard; absent when "
            "attached: no scoreboard).",
            labels=WORKER_LABELS,
        )
        requests = CounterMetricFamily(
            names.WORKER_REQUESTS,
            "Requests the worker served since it started (scoreboard).",
            labels=WORKER_LABELS,
        )
        state = GaugeMetricFamily(
            names.WORKER_STATE,
            "The worker's scoreboard state, as the state label of a series valued 1 "
            f"({', '.join(STATES)}; unknown when attached).",
            labels=(*WORKER_LABELS, "state"),
        )
        for i, w in enumerate(snap.workers):
            if w.state == WorkerState.EMPTY or w.pid <= 0:
                continue  # a slot never used: no process to name
            labels = [
                _model_label(snap, w),
                str(w.pid),
                str(w.tid),
                role_of(w),
                str(w.slot if w.slot is not None else i),
            ]
            if w.cpu_seconds is not None:
                cpu.add_metric(labels, w.cpu_seconds)
            if w.connections is not None:
                conns.add_metric(labels, w.connections)
            if w.accepts_total is not None:
                accepts.add_metric(labels, w.accepts_total)
            if w.requests_total is not None:
                requests.add_metric(labels, w.requests_total)
            state.add_metric([*labels, w.state], 1.0)
        yield from (cpu, conns, accepts, requests, state)

    def _listeners(self, snap: Snapshot) -> Iterator[Metric]:
        labels = ("address", "port", "listener")
        queue = GaugeMetricFamily(
            names.QUEUE_LENGTH,
            "Connections completed by the kernel and waiting for accept() (ss Recv-Q).",
            labels=labels,
        )
        limit = GaugeMetricFamily(
            names.QUEUE_LIMIT,
            "Accept-queue limit: min(backlog, net.core.somaxconn) (ss Send-Q).",
            labels=labels,
        )
        mechanism = GaugeMetricFamily(
            names.MECHANISM,
            "1 for how connections on this listener reach the workers, read from /proc: "
            "spread=shared|reuseport|master|acceptor_thread, wake=epoll|exclusive|blocking|"
            "mixed (epoll: every waiter woken; exclusive: EPOLLEXCLUSIVE, LIFO; blocking: "
            "accept(), FIFO). Absent when not read.",
            labels=(*labels, "spread", "wake"),
        )
        waiters = GaugeMetricFamily(
            names.WAITERS,
            "Processes or threads seen waiting on this listener (epoll sets, accept()).",
            labels=labels,
        )
        for ln in snap.listeners:
            values = [ln.address, str(ln.port), str(ln.index)]
            queue.add_metric(values, ln.queue)
            if ln.limit is not None:
                limit.add_metric(values, ln.limit)
            if ln.spread is not None:
                mechanism.add_metric([*values, str(ln.spread), str(ln.wake or "")], 1.0)
            if ln.waiters is not None:
                waiters.add_metric(values, ln.waiters)
        yield from (queue, limit, mechanism, waiters)

    def _kernel(self, snap: Snapshot) -> Iterator[Metric]:
        k = snap.kernel
        if k is None:
            return
        overflows = CounterMetricFamily(
            names.LISTEN_OVERFLOWS,
            "TcpExt ListenOverflows since boot (accept queue full at handshake). "
            "NAMESPACE-WIDE: every socket in the network namespace adds to it, not only "
            "this server's.",
        )
        overflows.add_metric([], k.listen_overflows)
        drops = CounterMetricFamily(
            names.LISTEN_DROPS,
            "TcpExt ListenDrops since boot (SYNs/handshakes dropped at a listener). "
            "NAMESPACE-WIDE: every socket in the network namespace adds to it, not only "
            "this server's.",
        )
        drops.add_metric([], k.listen_drops)
        yield from (overflows, drops)

    def _imbalance(self, snap: Snapshot) -> Iterator[Metric]:
        jain = GaugeMetricFamily(
            names.IMBALANCE_JAIN,
            "Jain's fairness index of the quantity over the workers in the window: "
            "1/n (one worker does all) .. 1 (even). Absent when nothing happened.",
            labels=("metric",),
        )
        top = GaugeMetricFamily(
            names.IMBALANCE_TOP_SHARE,
            "Share (0..1) of the quantity taken by the busiest worker in the window.",
            labels=("metric",),
        )
        window = GaugeMetricFamily(
            names.IMBALANCE_WINDOW,
            "Length of the window the imbalance indices cover.",
            labels=("metric",),
        )
        for name, imb in snap.imbalance.items():
            if imb is None:
                continue
            window.add_metric([name], imb.window_s)
            if imb.jain is not None:
                jain.add_metric([name], imb.jain)
            if imb.top_share is not None:
                top.add_metric([name], imb.top_share)
        yield from (jain, top, window)

    def _diagnoses(self, snap: Snapshot) -> Iterator[Metric]:
        active = {d.rule: d.severity for d in snap.diagnoses}
        with self._lock:
            self._rules.update(active)
            rules = dict(self._rules)
        fam = GaugeMetricFamily(
            names.DIAGNOSIS,
            "1 while the named diagnosis fires over the window, 0 for rules seen earlier.",
            labels=("rule", "severity"),
        )
        for rule, severity in sorted(rules.items()):
            fam.add_metric([rule, active.get(rule, severity)], 1.0 if rule in active else 0.0)
        yield fam

    def _phases(self, snap: Snapshot) -> Iterator[Metric]:
        ph = snap.phases
        if ph is None:
            return
        fam = HistogramMetricFamily(
            names.PHASE,
            "Where requests' time went, the whole server since it started: phase=queue "
            "(per accepted connection: first request bytes' kernel arrival to accept()), "
            "server (per request: the server had it to its handler starting: hand-off, "
            "parked, busy loop), service (per request: handler start to response sent). "
            "A value counts under the first le at or above its log bucket's top (<= 6.25% "
            "late).",
            labels=("phase",),
        )
        for name, h in ph.items():
            if h is not None:
                fam.add_metric([name], phase_buckets(h), sum_value=h.sum_us / 1e6)
        yield fam


# -- serving ----------------------------------------------------------------------------------


class SnapshotExporter:
    """The collector plus its HTTP server (`/metrics`, a daemon thread); `close()` stops it."""

    def __init__(self, address: ExportAddress) -> None:
        self.address = address
        self.collector = SnapshotCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SnapshotExporter:
        try:
            self._server, self._thread = start_http_server(
                self.address.port, addr=self.address.host, registry=self.registry
            )
        except OSError as e:
            fix = " (another exporter? pick another port)" if e.errno == 98 else ""
            raise ExportError(f"cannot export on {self.address}: {e.strerror or e}{fix}") from None
        return self

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._server.server_address[1] if self._server else self.address.port

    @property
    def url(self) -> str:
        host = self.address.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/metrics"

    def update(self, snap: Snapshot) -> None:
        self.collector.update(snap)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SnapshotExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
