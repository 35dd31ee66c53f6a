"""The fleet read back from Prometheus: what every `attach --no-ui --export` agent (and
every lab run with `--export`) exports, one `Fleet` per read, one `ServerHistory` for the
server a user selects. Prometheus is the store; serverscope keeps none of its own.

A server is a Prometheus target (job, instance): one agent exports one server. It is named
by `serverscope_server_info` (host, kind, root pid, ports: export.identity), not by the
scrape address. A read is a handful of instant queries, all evaluated at the same time:
- the targets seen over the last `minutes` (their last snapshot timestamp), and `up`;
- the server's name, its active diagnoses, its imbalance indices (the agent's window),
  its listeners' queues and limits, its workers' latest values;
- CPU throttling: the share of CFS periods throttled over the rate window, the most
  throttled cgroup of the target's, from THROTTLE_SERIES (the exporter's cgroup series);
  0 where the counters did not move (no quota on the cgroup's path: nothing can be
  throttled; or a quota and no runnable period), unknown where the exporter has none
  (its cpu.stat does not count periods, or an exporter older than the series).
A history is four range queries over the server's own series.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from judging import fleet_rank
from readers.promapi import Labels, PromClient, PromError, Sample, Series, selector_value
from values import series as names
from values.fleet import (
    Fleet,
    FleetDiagnosis,
    FleetImbalance,
    FleetListener,
    FleetServer,
    FleetWorker,
    Point,
    ServerHistory,
    ServerId,
    WorkerHistory,
)

# the exporter's series, by the names values.series declares for both sides
SNAPSHOT_TS = names.SNAPSHOT_TS
SERVER_INFO = names.SERVER_INFO
DIAGNOSIS = names.DIAGNOSIS
IMBALANCE = "|".join(
    (
        names.IMBALANCE_JAIN,
        names.IMBALANCE_TOP_SHARE,
        names.IMBALANCE_WINDOW,
        names.IMBALANCE_WORKERS,
        names.IMBALANCE_TOTAL,
    )
)
QUEUES = f"{names.QUEUE_LENGTH}|{names.QUEUE_LIMIT}"
STATE = names.WORKER_STATE
WORKERS = "|".join(
    (
        names.WORKER_CONNECTIONS,
        names.series(names.WORKER_CPU),
        names.series(names.WORKER_ACCEPTS),
        names.series(names.WORKER_REQUESTS),
        names.WORKER_STATE,
    )
)
# CPU throttling, per cgroup (counters as cgroup cpu.stat has them, v1 and v2 alike)
THROTTLE_SERIES = (names.series(names.PERIODS), names.series(names.THROTTLED_PERIODS))
RATE_WINDOW_S = 60.0  # rates (CPU %, accepts/s, throttling) over this long
HISTORY_POINTS = 60  # points per series in a history

Key = tuple[str, str]  # (job, instance)
WorkerKey = tuple[str, str, str, str]  # the exporter's pid, tid, role, worker labels

__all__ = ["THROTTLE_SERIES", "FleetReader", "PromError"]


def _key(labels: Labels) -> Key:
    return (labels.get("job", ""), labels.get("instance", ""))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _count(x: float | None) -> int | None:
    return None if x is None else round(x)


def _worker_key(lb: Labels) -> WorkerKey:
    return (lb.get("pid", ""), lb.get("tid", ""), lb.get("role", ""), lb.get("worker", ""))


def _by_pid(item: tuple[WorkerKey, object]) -> tuple[int, int]:
    return (_int(item[0][0]) or 0, _int(item[0][1]) or 0)


@dataclass
class _Parts:
    """What the queries said about one target, before it becomes a FleetServer."""

    snapshot_time: float | None = None
    up: bool | None = None
    info: Labels | None = None
    diagnoses: list[FleetDiagnosis] = field(default_factory=list)
    imbalance: dict[str, dict[str, float | None]] = field(default_factory=dict)
    listeners: dict[tuple[str, str, str], dict[str, float | None]] = field(default_factory=dict)
    workers: dict[WorkerKey, dict[str, float | None]] = field(default_factory=dict)
    states: dict[WorkerKey, str] = field(default_factory=dict)
    n_workers: int | None = None
    throttled: float | None = None
    cpu_limit: float | None = None  # cores, the tightest of its cgroups' limits


class FleetReader:
    """Reads the fleet through `client`; `job` narrows it to one Prometheus job."""

    def __init__(
        self,
        client: PromClient,
        *,
        job: str | None = None,
        minutes: float = 10.0,
        rate_window_s: float = RATE_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.job = job
        self.minutes = minutes
        self.rate_window_s = rate_window_s
        self.clock = clock

    @property
    def url(self) -> str:
        return self.client.url

    def close(self) -> None:
        self.client.close()

    def _sel(self, **more: str) -> str:
        """The label matchers every query carries, e.g. `job="web"` (may be empty)."""
        pairs = ({"job": self.job} if self.job else {}) | more
        return ",".join(f"{k}={selector_value(v)}" for k, v in pairs.items())

    def _named(self, pattern: str) -> str:
        sel = self._sel()
        return f"{{__name__=~{selector_value(pattern)}{',' + sel if sel else ''}}}"

    # -- the list -----------------------------------------------------------------------
    def read(self, at: float | None = None, *, workers: bool = True) -> Fleet:
        """The fleet now (or at `at`). `workers=False` reads only how many workers each
        server has, not their rows: what the list needs, and most of the series (40 of
        58 per server at 8 workers)."""
        t0 = time.monotonic()
        asked = self.client.queries
        t = self.clock() if at is None else at
        sel = self._sel()
        span = f"[{max(1, round(self.minutes * 60))}s]"
        rate = f"[{max(1, round(self.rate_window_s))}s]"
        n_series = 0

        def q(promql: str) -> list[Sample]:
            nonlocal n_series
            out = self.client.query(promql, t)
            n_series += len(out)
            return out

        parts: dict[Key, _Parts] = {}
        seen_expr = f"last_over_time({SNAPSHOT_TS}{{{sel}}}{span})"
        for s in q(seen_expr):
            parts[_key(s.labels)] = _Parts(snapshot_time=s.value)
        if not parts:
            return Fleet(self.url, t, (), self.minutes, fleet_rank.ORDER, time.monotonic() - t0)
        for s in q(f"up{{{sel}}} and on (job, instance) {seen_expr}"):
            if (p := parts.get(_key(s.labels))) is not None:
                p.up = s.value == 1.0
        for s in q(f"{SERVER_INFO}{{{sel}}}"):
            if (p := parts.get(_key(s.labels))) is not None:
                p.info = s.labels
        if any(p.info is None for p in parts.values()):  # not scraped now: the last name seen
            for s in q(f"last_over_time({SERVER_INFO}{{{sel}}}{span})"):
                if (p := parts.get(_key(s.labels))) is not None and p.info is None:
                    p.info = s.labels
        for s in q(f"{DIAGNOSIS}{{{sel}}} == 1"):
            if (p := parts.get(_key(s.labels))) is not None:
                p.diagnoses.append(
                    FleetDiagnosis(s.labels.get("rule", "?"), s.labels.get("severity", "?"))
                )
        self._imbalance(q(self._named(IMBALANCE)), parts)
        self._listeners(q(self._named(QUEUES)), parts)
        if workers:
            self._workers(q(self._named(WORKERS)), parts)
        else:
            count = f'count by (job, instance) ({STATE}{{{sel}{"," if sel else ""}role="worker"}})'
            for s in q(count):
                if (p := parts.get(_key(s.labels))) is not None:
                    p.n_workers = _count(s.value)
        periods, throttled = (q(f"rate({name}{{{sel}}}{rate})") for name in THROTTLE_SERIES)
        self._throttling(periods, throttled, parts)
        for s in q(f"{names.LIMIT_CORES}{{{sel}}}"):
            if (p := parts.get(_key(s.labels))) is not None and s.value is not None:
                p.cpu_limit = s.value if p.cpu_limit is None else min(p.cpu_limit, s.value)
        servers = fleet_rank.rank(self._server(k, p, t) for k, p in parts.items())
        return Fleet(
            self.url,
            t,
            servers,
            self.minutes,
            fleet_rank.ORDER,
            time.monotonic() - t0,
            self.client.queries - asked,
            n_series,
        )

    @staticmethod
    def _imbalance(samples: Iterable[Sample], parts: dict[Key, _Parts]) -> None:
        for s in samples:
            p = parts.get(_key(s.labels))
            if p is not None:
                field_name = s.labels.get("__name__", "").removeprefix(names.IMBALANCE)
                p.imbalance.setdefault(s.labels.get("metric", "?"), {})[field_name] = s.value

    @staticmethod
    def _listeners(samples: Iterable[Sample], parts: dict[Key, _Parts]) -> None:
        for s in samples:
            p = parts.get(_key(s.labels))
            if p is not None:
                lb = s.labels
                lk = (lb.get("address", ""), lb.get("port", ""), lb.get("listener", ""))
                name = s.labels.get("__name__", "").removeprefix(names.LISTENER_QUEUE)
                p.listeners.setdefault(lk, {})[name] = s.value

    @staticmethod
    def _workers(samples: Iterable[Sample], parts: dict[Key, _Parts]) -> None:
        for s in samples:
            p = parts.get(_key(s.labels))
            if p is None:
                continue
            wk = _worker_key(s.labels)
            row = p.workers.setdefault(wk, {})
            name = s.labels.get("__name__", "").removeprefix(names.WORKER)
            if name != "state":
                row[name] = s.value
            elif s.value == 1.0:
                p.states[wk] = s.labels.get("state", "?")

    @staticmethod
    def _throttling(
        periods: list[Sample], throttled: list[Sample], parts: dict[Key, _Parts]
    ) -> None:
        """Per target, the most throttled cgroup's throttled periods / periods; 0 where the
        counters exist but no period ran (nothing was throttled), None without them."""

        def bare(labels: Labels) -> tuple[tuple[str, str], ...]:
            return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))

        ran = {bare(s.labels): s.value for s in periods}
        for s in throttled:
            p = parts.get(_key(s.labels))
            total = ran.get(bare(s.labels))
            if p is None or s.value is None or total is None:
                continue
            share = min(1.0, s.value / total) if total > 0 else 0.0
            p.throttled = share if p.throttled is None else max(p.throttled, share)

    @staticmethod
    def _server(key: Key, p: _Parts, t: float) -> FleetServer:
        info = p.info or {}
        ports = tuple(sorted({x for x in map(_int, info.get("ports", "").split(",")) if x}))
        sid = ServerId(
            job=key[0],
            instance=key[1],
            host=info.get("host") if p.info is not None else None,
            server=info.get("server") or None,
            program=info.get("program") or None,
            root_pid=_int(info.get("root_pid")),
            ports=ports,
            accepts=info.get("accepts") or None,
        )
        imbalance = tuple(
            FleetImbalance(
                metric,
                window_s=v.get("window_seconds"),
                workers=_count(v.get("workers")),
                total=v.get("total"),
                jain=v.get("jain"),
                top_share=v.get("top_share"),
            )
            for metric, v in sorted(p.imbalance.items())
        )
        listeners = tuple(
            FleetListener(
                port=_int(port) or 0,
                address=address,
                index=_int(index) or 0,
                queue=_count(v.get("length")) or 0,
                limit=_count(v.get("limit")),
            )
            for (address, port, index), v in sorted(p.listeners.items())
            if v.get("length") is not None
        )
        workers = tuple(
            FleetWorker(
                pid=_int(pid) or 0,
                tid=_int(tid) or 0,
                role=role,
                label=label,
                state=p.states.get((pid, tid, role, label)),
                connections=_count(row.get("open_connections")),
                cpu_seconds=row.get("cpu_seconds_total"),
                accepts_total=_count(row.get("accepts_total")),
                requests_total=_count(row.get("requests_total")),
            )
            for (pid, tid, role, label), row in sorted(p.workers.items(), key=_by_pid)
        )
        age = t - p.snapshot_time if p.snapshot_time is not None else None
        n_workers = p.n_workers
        if n_workers is None and workers:
            n_workers = sum(1 for w in workers if w.role == "worker")
        return FleetServer(
            sid,
            up=p.up,
            snapshot_time=p.snapshot_time,
            age_s=age,
            workers=workers,
            listeners=listeners,
            imbalance=imbalance,
            diagnoses=tuple(p.diagnoses),
            throttled=p.throttled,
            cpu_limit=p.cpu_limit,
            n_workers=n_workers,
        )

    # -- one server over the last minutes ----------------------------------------------
    def history(self, sid: ServerId, *, at: float | None = None) -> ServerHistory:
        t0 = time.monotonic()
        end = self.clock() if at is None else at
        start = end - self.minutes * 60
        step = max(1.0, (end - start) / HISTORY_POINTS)
        window = max(self.rate_window_s, step)
        sel = self._sel(job=sid.job, instance=sid.instance)
        rate = f"[{max(1, round(window))}s]"

        def q(promql: str) -> list[Series]:
            return self.client.query_range(promql, start, end, step)

        rows: dict[WorkerKey, dict[str, tuple[Point, ...]]] = defaultdict(dict)
        queries = {
            "connections": f"{names.WORKER_CONNECTIONS}{{{sel}}}",
            "cpu_percent": f"rate({names.series(names.WORKER_CPU)}{{{sel}}}{rate}) * 100",
            "accepts_per_s": f"rate({names.series(names.WORKER_ACCEPTS)}{{{sel}}}{rate})",
        }
        for name, promql in queries.items():
            for s in q(promql):
                rows[_worker_key(s.labels)][name] = s.points
        queue = q(f"sum({names.QUEUE_LENGTH}{{{sel}}})")
        workers = tuple(
            WorkerHistory(
                pid=_int(pid) or 0,
                tid=_int(tid) or 0,
                role=role,
                label=label,
                connections=v.get("connections", ()),
                cpu_percent=v.get("cpu_percent", ()),
                accepts_per_s=v.get("accepts_per_s", ()),
            )
            for (pid, tid, role, label), v in sorted(rows.items(), key=_by_pid)
        )
        return ServerHistory(
            sid,
            start,
            end,
            step,
            window,
            workers,
            queue[0].points if queue else (),
            time.monotonic() - t0,
        )
