"""`serverscope fleet` without a Prometheus: the loopback rule and the errors of its client,
the reading of the exporters' series (fleetfake answers the queries), worst first, the
throttling column's contract, the exporter's fleet series, the text table and the JSON.
The real Prometheus scraping real agents is test_fleet_real.py."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import synthetic
from commands.main import main
from export.prometheus import SnapshotCollector
from fleetfake import FakeProm, FakeSeries, five_servers
from judging import fleet_rank
from readers import promapi
from readers.promapi import PromClient, PromError, base_url
from text.fleet import render
from values.fleet import (
    Fleet,
    FleetImbalance,
    FleetListener,
    FleetServer,
    ServerId,
    WorkerHistory,
)
from values.fleet_format import COLUMNS, cells, peaks, sparkline

# -- the loopback rule and the client's errors -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("http://localhost:9090/", "http://127.0.0.1:9090"),
        ("127.0.0.2:9090", "http://127.0.0.2:9090"),
        ("http://[::1]:9090/prometheus/", "http://[::1]:9090/prometheus"),
    ],
)
def test_a_loopback_prometheus_url_is_read_there(url: str, base: str) -> None:
    assert base_url(url) == base


@pytest.mark.parametrize("url", ["http://10.0.0.1:9090", "http://prometheus.example.com:9090"])
def test_a_prometheus_off_loopback_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(PromError, match=r"not on loopback.*--allow-remote"):
        base_url(url)
    assert base_url(url, allow_remote=True) == url


def test_the_fleet_command_refuses_a_remote_prometheus_in_one_line(capsys) -> None:
    assert main(["fleet", "--prometheus", "http://10.0.0.1:9090", "--once"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-remote" in err, err


def test_the_fleet_command_says_in_one_line_that_nothing_answers(capsys) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["fleet", "--prometheus", f"http://127.0.0.1:{port}", "--once", "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "connection refused" in err, err


def _client(handler) -> PromClient:  # type: ignore[no-untyped-def]
    return PromClient("http://127.0.0.1:9090", transport=httpx.MockTransport(handler))


def _refusal(answer: httpx.Response, query: str = "up") -> str:
    """The one line PromError says when `answer` comes back to `query`."""
    with _client(lambda r: answer) as c, pytest.raises(PromError) as e:
        c.query(query, 0)
    return str(e.value)


def test_what_is_not_prometheus_is_named_in_one_line() -> None:
    not_prom = _refusal(httpx.Response(404, text="<html>not here</html>"))
    assert "did not answer as Prometheus's HTTP API (HTTP 404)" in not_prom
    redirect = _refusal(httpx.Response(302, headers={"Location": "http://10.0.0.1/"}))
    assert "(a redirect (not followed))" in redirect
    error = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    refused = _refusal(httpx.Response(400, json=error), "up{")
    assert refused == "Prometheus refused 'up{': parse error at char 3"
    assert all("\n" not in m for m in (not_prom, redirect, refused))


def test_an_answer_too_big_is_refused_unread(monkeypatch) -> None:
    monkeypatch.setattr(promapi, "MAX_ANSWER_BYTES", 1000)
    body = {"status": "success", "data": {"resultType": "vector", "result": []}, "pad": "x" * 5000}
    assert "not read (narrow it: --job NAME)" in _refusal(httpx.Response(200, json=body))


def test_nan_and_infinite_values_read_as_unknown() -> None:
    result = [
        {"metric": {"a": str(i)}, "value": [0, v]} for i, v in enumerate(["NaN", "+Inf", "2"])
    ]
    answer = {"status": "success", "data": {"resultType": "vector", "result": result}}
    with _client(lambda r: httpx.Response(200, json=answer)) as c:
        assert [s.value for s in c.query("x", 0)] == [None, None, 2.0]


class _Proxy(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self) -> None:  # a proxy would be asked for the absolute URL
        type(self).hits += 1
        self.send_response(502)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_proxy_in_the_environment_is_not_used(proxy: str, monkeypatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _Proxy.hits = 0
    with PromClient("http://127.0.0.2:9") as c, pytest.raises(PromError, match="refused"):
        c.query("up", 0)  # straight to 127.0.0.2:9 (refused), never through the proxy
    assert _Proxy.hits == 0


# -- reading and ranking ------------------------------------------------------------------------


@pytest.fixture
def five() -> FakeProm:
    return five_servers()


def test_the_fleet_is_listed_worst_first(five: FakeProm) -> None:
    fleet = five.reader().read()
    order = [s.id.server for s in fleet.servers]
    # critical (starvation, then the unscraped agent: no pressure known), the warning,
    # then by pressure: throttled 50% above an idle nginx
    assert order == ["apache-prefork", "gunicorn-sync", "many_accepts", "node-cluster", "nginx"]
    by = {s.id.server: s for s in fleet.servers}
    assert by["gunicorn-sync"].standing.reason == "not scraped (up 0)"  # type: ignore[union-attr]
    assert by["many_accepts"].standing.by == "connections"  # type: ignore[union-attr]
    # 16 of 20 over 4 workers: (0.8 - 0.25) / 0.75 from even
    assert by["many_accepts"].standing.pressure == pytest.approx(0.55 / 0.75)  # type: ignore[union-attr]
    assert by["node-cluster"].throttled == 0.5
    assert by["nginx"].throttled is None  # no throttling series: unknown, not 0
    a = by["apache-prefork"]
    assert a.id.name == "web-9464 apache-prefork :8080 (pid 100)"
    assert [w.connections for w in a.live_workers] == [1, 1, 1, 1]
    assert a.listeners == (FleetListener(8080, "127.0.0.1", 0, 2, 511),)
    assert fleet.queries == len(five.asked) and fleet.series > 0


def test_the_throttling_column_reads_unknown_until_the_exporter_has_the_series(
    five: FakeProm,
) -> None:
    fleet = five.reader().read()
    throttled = {s.id.server: cells(1, s)[COLUMNS.index("throttled")] for s in fleet.servers}
    assert throttled["nginx"] == "unknown"  # no cpu.stat counters exported
    assert throttled["node-cluster"] == "50% of 0.5 core"
    by_name = {s.id.server: s for s in fleet.servers}
    assert by_name["node-cluster"].cpu_limit == 0.5 and by_name["nginx"].cpu_limit is None
    # cpu.stat's counters but no quota on the path: 0% is true, and said to be no limit
    free = FleetServer(ServerId("j", "x"), throttled=0.0)
    assert cells(1, free)[COLUMNS.index("throttled")] == "0% no limit"


def test_a_spread_over_too_few_events_is_shown_but_not_ranked() -> None:
    few = FleetImbalance("accepts", 5.0, workers=4, total=3.0, jain=0.33, top_share=1.0)
    s = FleetServer(ServerId("j", "x"), age_s=1.0, imbalance=(few,))
    assert fleet_rank.accept_spread(s) is None  # 3 accepts: no judgement
    assert fleet_rank.standing(s).pressure is None
    enough = FleetImbalance("accepts", 5.0, workers=4, total=40.0, jain=0.4, top_share=0.7)
    s2 = FleetServer(ServerId("j", "y"), age_s=1.0, imbalance=(enough,))
    assert fleet_rank.accept_spread(s2) == enough
    ranked = fleet_rank.rank([s, s2])  # the cells read the spread the ranking judged
    assert [x.id.instance for x in ranked] == ["y", "x"]
    assert ranked[0].standing is not None and ranked[0].standing.spread == "accepts"
    assert cells(1, ranked[0])[COLUMNS.index("imbalance")] == "acc 70% of 4"
    assert cells(2, ranked[1])[COLUMNS.index("imbalance")] == "acc 100% of 4 (few)"


def test_a_silent_agent_counts_as_critical() -> None:
    s = FleetServer(ServerId("j", "x"), up=True, age_s=fleet_rank.STALE_S + 5)
    st = fleet_rank.standing(s)
    assert st.severity == "critical" and st.reason.startswith("silent 65 s")


def test_the_json_reads_back_equal_and_the_table_draws_every_server(five: FakeProm) -> None:
    fleet = five.reader().read()
    again = Fleet.from_dict(json.loads(json.dumps(fleet.to_dict())))
    assert again == fleet
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render(fleet))
    text = console.export_text()
    for s in fleet.servers:
        assert s.id.server in text
    assert "worst first" in text and "unknown" in text


def test_the_history_reads_each_worker_over_the_range() -> None:
    fake = FakeProm()
    w = {"instance": "a:1", "pid": "11", "tid": "11", "role": "worker", "worker": "0"}
    labels = {"job": "serverscope", **w}
    points = [(990.0, 1), (1000.0, 3)]
    fake.series.append(FakeSeries("serverscope_worker_open_connections", labels, 0, points))
    h = fake.reader(minutes=1).history(ServerId("serverscope", "a:1"))
    assert [x.pid for x in h.workers] == [11]
    assert h.workers[0].connections == ((990.0, 1.0), (1000.0, 3.0))
    assert h.workers[0].accepts_per_s == ()  # not exported: no line, not a flat zero
    assert any('instance="a:1"' in q for q in fake.asked)


def test_a_sparkline_leaves_a_gap_where_there_was_no_sample() -> None:
    points = [(0.0, 0.0), (5.0, 4.0), (9.0, None)]
    assert sparkline(points, 10, span=(0.0, 10.0)) == "▁    █    "
    assert sparkline([], 10) == ""


def test_an_idle_worker_is_drawn_at_the_bottom_not_half_way_up_a_tiny_scale() -> None:
    idle = WorkerHistory(1, 1, "worker", "0", cpu_percent=((0.0, 0.02), (10.0, 0.03)))
    busy = WorkerHistory(2, 2, "worker", "1", cpu_percent=((0.0, 40.0), (10.0, 80.0)))
    top = peaks([idle])
    assert top["cpu_percent"] == 10.0  # the floor: 0.03% of a core is idle
    assert sparkline(idle.cpu_percent, 2, top["cpu_percent"], (0.0, 10.0)) == "▁▁"
    assert peaks([idle, busy])["cpu_percent"] == 80.0


# -- what the exporter adds for the fleet -------------------------------------------------------


def test_the_exporter_names_its_server_and_the_basis_of_each_imbalance_index() -> None:
    snap = synthetic.series(12, connections=[6, 1, 1, 0])[-1]
    collector = SnapshotCollector(host="web-1")
    collector.update(snap)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert snap.model is not None and snap.imbalance.connections is not None
    assert (
        f'serverscope_server_info{{accepts="scoreboard",host="web-1",ports="{snap.listeners[0].port}",'
        f'program="",root_pid="{snap.model.root_pid}",server="{snap.model.name}"}} 1.0'
    ) in text
    for name, imb in snap.imbalance.items():
        if imb is not None:
            assert f'serverscope_imbalance_workers{{metric="{name}"}} {float(imb.n)}' in text
            assert f'serverscope_imbalance_total{{metric="{name}"}}' in text
