"""The fleet's immutable values: every server the agents export, read back from Prometheus.

One `Fleet` per read (lab.fleet_source), worst first (judging.fleet_rank); one
`ServerHistory` for the server a user selects. Plain data, so the TUI, the text table and
the JSON render them alike, and tests feed them synthetic ones.

Units: times are Unix wall-clock seconds (Prometheus's); `*_s` seconds; shares 0..1.
Unknown is None everywhere, never 0: a figure no series gave (an older agent, a server
whose accepts are not counted, throttling where cpu.stat has no period counters).

JSON: `Fleet.to_dict()` (codec.encode) and `Fleet.from_dict()` (codec.decode, checked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import decode, encode

Point = tuple[float, float | None]  # (unix time, value; None: no sample, or NaN)


@dataclass(frozen=True, slots=True)
class ServerId:
    """Which server: the Prometheus target (job, instance) it is read through, and what
    `serverscope_server_info` names it by (None: an exporter without that series)."""

    job: str
    instance: str  # the scrape address: Prometheus's label, not the server's name
    host: str | None = None  # the agent's host name
    server: str | None = None  # kind ("apache-prefork", "gunicorn-sync") or the lab's model
    program: str | None = None  # its executable ("apache2", "node", "python3.11")
    root_pid: int | None = None
    ports: tuple[int, ...] = ()  # its listening ports
    accepts: str | None = None  # how accepts are counted: exact, estimate, scoreboard

    @property
    def name(self) -> str:
        """'web-3 apache-prefork :8080 (pid 412)'; the instance when the agent names none."""
        if self.host is None:
            return self.instance
        ports = ",".join(map(str, self.ports))
        where = f" :{ports}" if ports else ""
        pid = f" (pid {self.root_pid})" if self.root_pid is not None else ""
        return f"{self.host} {self.server or '?'}{where}{pid}"


@dataclass(frozen=True, slots=True)
class FleetWorker:
    """One exported worker row (serverscope_worker_*), its latest values."""

    pid: int
    tid: int
    role: str  # worker, listener, master, helper, thread, process
    label: str  # the exporter's `worker` label: scoreboard slot or position
    state: str | None = None  # serverscope_worker_state's state label
    connections: int | None = None
    cpu_seconds: float | None = None  # cumulative since the process started (schedstat)
    accepts_total: int | None = None  # cumulative since the agent started counting
    requests_total: int | None = None


@dataclass(frozen=True, slots=True)
class FleetListener:
    port: int
    address: str
    index: int
    queue: int  # accept queue now (ss Recv-Q)
    limit: int | None  # its limit (ss Send-Q); None: unknown

    @property
    def fill(self) -> float | None:
        return self.queue / self.limit if self.limit else None


@dataclass(frozen=True, slots=True)
class FleetImbalance:
    """One imbalance index set as the agent exported it (its own sliding window)."""

    metric: str  # accepts, connections, cpu
    window_s: float | None = None
    workers: int | None = None  # n, serverscope_imbalance_workers (None: an older agent)
    total: float | None = None  # events behind the indices, serverscope_imbalance_total
    jain: float | None = None
    top_share: float | None = None

    @property
    def from_even(self) -> float | None:
        """How far the top share is from an even one: (top - 1/n) / (1 - 1/n), 0 even ..
        1 one worker took everything; None without the share or with fewer than 2."""
        n = self.workers
        if self.top_share is None or n is None or n < 2:
            return None
        return max(0.0, (self.top_share - 1 / n) / (1 - 1 / n))


@dataclass(frozen=True, slots=True)
class FleetDiagnosis:
    rule: str
    severity: str  # critical, warning, info (the exporter's label)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a server ranks and why (judging.fleet_rank)."""

    severity: str | None  # its worst active diagnosis (or "critical" when not seen)
    pressure: float | None  # the largest judged figure, 0..1: queue fill, accept spread
    # from even, throttled share; None when none could be judged
    by: str | None  # which figure `pressure` is ("queue", "accepts", "connections", ...)
    reason: str  # one line: why it is where it is
    spread: str | None = None  # the spread judged: "accepts", "connections"; None: too few
    # events for either (the table then shows the exported one with "(few)")
    not_seen: str | None = None  # why the figures are not current ("silent 95 s"), or None


@dataclass(frozen=True, slots=True)
class FleetServer:
    id: ServerId
    up: bool | None = None  # Prometheus's `up` for the target (None: no such series)
    snapshot_time: float | None = None  # the agent's last snapshot, unix seconds
    age_s: float | None = None  # query time - snapshot_time
    workers: tuple[FleetWorker, ...] = ()
    listeners: tuple[FleetListener, ...] = ()
    imbalance: tuple[FleetImbalance, ...] = ()
    diagnoses: tuple[FleetDiagnosis, ...] = ()  # active now
    throttled: float | None = None  # share of CPU (CFS) periods throttled over the rate
    # window, the most throttled cgroup of the target's; 0 without a quota (nothing can
    # be throttled); None: no throttling series (cpu.stat without the counters)
    cpu_limit: float | None = None  # the tightest CPU limit (cores) of the target's cgroups,
    # serverscope_cgroup_cpu_limit_cores; None: none exported (no quota on any, or an agent
    # without cgroup series: `throttled` tells which)
    standing: Standing | None = None  # set by fleet_rank
    n_workers: int | None = None  # workers (role worker) exported; None: none read

    @property
    def live_workers(self) -> tuple[FleetWorker, ...]:
        return tuple(w for w in self.workers if w.role == "worker")

    @property
    def queue(self) -> int | None:
        return sum(ln.queue for ln in self.listeners) if self.listeners else None

    @property
    def queue_fill(self) -> float | None:
        """The fullest listener's queue / limit (None: no listener with a known limit)."""
        fills = [f for ln in self.listeners if (f := ln.fill) is not None]
        return max(fills) if fills else None

    def spread(self, metric: str) -> FleetImbalance | None:
        return next((i for i in self.imbalance if i.metric == metric), None)


@dataclass(frozen=True, slots=True)
class Fleet:
    prometheus: str  # the URL read
    time: float  # the evaluation time of every query, unix seconds
    servers: tuple[FleetServer, ...] = ()  # worst first once ranked
    minutes: float = 10.0  # targets seen over this many minutes are listed
    order: str = ""  # the ranking rule, in words (fleet_rank.ORDER)
    read_s: float | None = None  # how long the read took (queries and parsing)
    queries: int = 0
    series: int = 0  # series the answers held

    def to_dict(self) -> dict[str, Any]:
        return encode(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, d: Any) -> Fleet:
        return decode(cls, d)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class WorkerHistory:
    pid: int
    tid: int
    role: str
    label: str
    connections: tuple[Point, ...] = ()  # open connections
    cpu_percent: tuple[Point, ...] = ()  # % of one core, rate over the rate window
    accepts_per_s: tuple[Point, ...] = ()  # rate over the rate window; () when not exported


@dataclass(frozen=True, slots=True)
class ServerHistory:
    """One server's workers over the last minutes (range queries)."""

    server: ServerId
    start: float
    end: float
    step_s: float
    rate_window_s: float
    workers: tuple[WorkerHistory, ...] = ()
    queue: tuple[Point, ...] = ()  # summed over its listeners
    read_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return encode(self)  # type: ignore[no-any-return]
