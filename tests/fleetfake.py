"""A stand-in for Prometheus's HTTP API in unit tests (httpx.MockTransport): it answers the
few query shapes lab.fleet_source asks, from a table of series, so the reading, the
ranking and the rendering can be tested without a Prometheus. The real one is in
test_fleet_real.py, which is where the queries themselves are proven.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx

from lab.fleet_source import FleetReader
from readers.promapi import PromClient


@dataclass
class FakeSeries:
    name: str
    labels: dict[str, str]
    value: float | str  # "NaN", "+Inf" as Prometheus writes them
    points: Sequence[tuple[float, float]] = ()  # for range queries


@dataclass
class FakeProm:
    series: list[FakeSeries] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    down: bool = False  # True: every request is refused, as by a stopped Prometheus

    def add(self, name: str, value: float | str, job: str = "serverscope", **labels: str) -> None:
        self.series.append(FakeSeries(name, {"job": job, **labels}, value))

    def _named(self, query: str) -> list[FakeSeries]:
        """The series the query's first selector names (a rate's: its "rate:NAME" rows)."""
        want = dict(re.findall(r'(\w+)="([^"]*)"', query))  # the = matchers (job, instance)
        m = re.search(r'__name__=~"([^"]+)"', query)
        if m:
            named = [s for s in self.series if re.fullmatch(m.group(1), s.name)]
        else:
            m = re.search(r"(serverscope_\w+|up)\{", query)
            assert m, query
            name = ("rate:" if query.startswith("rate(") else "") + m.group(1)
            named = [s for s in self.series if s.name == name]
        return [s for s in named if all(s.labels.get(k) == v for k, v in want.items())]

    def _vector(self, query: str) -> list[dict]:
        chosen = self._named(query)
        if "== 1" in query:
            chosen = [s for s in chosen if s.value == 1]
        out = []
        if query.startswith("count by (job, instance)"):
            counts: dict[tuple[str, str], int] = {}
            for s in chosen:
                key = (s.labels["job"], s.labels["instance"])
                counts[key] = counts.get(key, 0) + 1
            return [
                {"metric": {"job": j, "instance": i}, "value": [1.0, str(n)]}
                for (j, i), n in counts.items()
            ]
        functions = ("rate(", "last_over_time(", "up")  # what drops the name (up: the join)
        for s in chosen:
            labels = dict(s.labels)
            if not query.startswith(functions):
                labels["__name__"] = s.name
            out.append({"metric": labels, "value": [1.0, str(s.value)]})
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        query = form["query"]
        self.asked.append(query)
        if request.url.path.endswith("/query_range"):
            chosen = self._named(query)
            result = [
                {"metric": dict(s.labels), "values": [[t, str(v)] for t, v in s.points]}
                for s in chosen
            ]
            data = {"resultType": "matrix", "result": result}
        else:
            data = {"resultType": "vector", "result": self._vector(query)}
        body = json.dumps({"status": "success", "data": data})
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    def reader(self, **kw: object) -> FleetReader:
        client = PromClient("http://127.0.0.1:9090", transport=httpx.MockTransport(self.handle))
        return FleetReader(client, clock=lambda: 1000.0, **kw)  # type: ignore[arg-type]


def server(
    fake: FakeProm,
    instance: str,
    *,
    server: str,
    root_pid: int,
    port: int,
    connections: Sequence[int],
    queue: int = 0,
    limit: int = 511,
    diagnoses: Sequence[tuple[str, str]] = (),
    snapshot_age: float = 1.0,
    up: bool = True,
) -> None:
    """One agent's series as its exporter writes them (export.prometheus, export.identity)."""
    t = {"instance": instance}
    fake.add("serverscope_snapshot_timestamp_seconds", 1000.0 - snapshot_age, **t)
    fake.add("up", 1 if up else 0, **t)
    info = {"host": "web-" + instance.split(":")[1], "server": server, "program": server}
    fake.add(
        "serverscope_server_info",
        1,
        **t,
        **info,
        root_pid=str(root_pid),
        ports=str(port),
        accepts="exact",
    )
    for rule, severity in diagnoses:
        fake.add("serverscope_diagnosis_active", 1, **t, rule=rule, severity=severity)
    if not up:
        return  # a target Prometheus cannot scrape has no current series
    for name, value in (("length", queue), ("limit", limit)):
        fake.add(
            f"serverscope_listener_queue_{name}",
            value,
            **t,
            address="127.0.0.1",
            port=str(port),
            listener="0",
        )
    n = len(connections)
    total = sum(connections)
    fake.add("serverscope_imbalance_window_seconds", 5.0, **t, metric="connections")
    fake.add("serverscope_imbalance_workers", n, **t, metric="connections")
    fake.add("serverscope_imbalance_total", total, **t, metric="connections")
    if total:
        fake.add(
            "serverscope_imbalance_top_share", max(connections) / total, **t, metric="connections"
        )
        jain = total**2 / (n * sum(c * c for c in connections))
        fake.add("serverscope_imbalance_jain", jain, **t, metric="connections")
    for i, c in enumerate(connections):
        w = {
            "model": server,
            "pid": str(root_pid + 1 + i),
            "tid": str(root_pid + 1 + i),
            "role": "worker",
            "worker": str(i),
        }
        labels = {"job": "serverscope", **t, **w}
        points = [(940.0, 0.0), (970.0, c / 2), (1000.0, float(c))]  # for range queries
        fake.series.append(FakeSeries("serverscope_worker_open_connections", labels, c, points))
        fake.add("serverscope_worker_cpu_seconds_total", 0.5 + i, **t, **w)
        fake.add("serverscope_worker_state", 1, **t, **w, state="keepalive" if c else "waiting")


def five_servers() -> FakeProm:
    """A starved prefork, a skewed many_accepts, a healthy nginx, an agent Prometheus cannot
    scrape, and a healthy-looking one throttled half its CPU periods."""
    fake = FakeProm()
    server(
        fake,
        "a:9464",
        server="apache-prefork",
        root_pid=100,
        port=8080,
        connections=[1, 1, 1, 1],
        queue=2,
        diagnoses=[("starvation", "critical")],
    )
    server(
        fake,
        "b:9464",
        server="many_accepts",
        root_pid=200,
        port=8081,
        connections=[16, 1, 2, 1],
        diagnoses=[("accept_skew", "warning")],
    )
    server(fake, "c:9464", server="nginx", root_pid=300, port=8082, connections=[0, 0])
    server(
        fake,
        "d:9464",
        server="gunicorn-sync",
        root_pid=400,
        port=8083,
        connections=[],
        snapshot_age=90,
        up=False,
    )
    server(fake, "e:9464", server="node-cluster", root_pid=500, port=8084, connections=[1, 1])
    fake.add("rate:serverscope_cgroup_cpu_periods_total", 10.0, instance="e:9464", cgroup="/x")
    fake.add(
        "rate:serverscope_cgroup_cpu_throttled_periods_total",
        5.0,
        instance="e:9464",
        cgroup="/x",
    )
    fake.add("serverscope_cgroup_cpu_limit_cores", 0.5, instance="e:9464", cgroup="/x")
    return fake  # fmt: skip
