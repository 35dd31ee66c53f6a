"""The client's phases of each request (issue 16) and the generator watching itself.

Phases: per request, wait + connect + ttfb + read + resume = its latency, checked request
by request on a recorded sample (the driver run in this process, Recorder.ok wrapped) and
over whole runs in the generator process, against real serverscope servers; the phases
also have to agree with what the server was asked to do (an `io_ms` delay shows in ttfb, a
new connection per request in connect). Generator warnings: provoked honestly with an
open-loop rate far above what a Python generator reaches against nginx, absent on a light
load, and a schedule held back by busy connections is not blamed on the generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from rich.console import Console

from conftest import wait_until
from loadgen.driver import Driver
from loadgen.engine import resolve
from loadgen.engine_fast import FastClient
from loadgen.levels import LoadLevel
from loadgen.recorder import Recorder
from loadgen.result import LoadResult
from loadgen.runner import LoadRunner
from loadgen.stats import PHASE_NAMES, ClientPhases, LoadStats, Percentiles
from realservers import real_server  # noqa: F401 - the fixture
from servers.config import ServerConfig
from servers.supervisor import Supervisor
from text.load import load_summary
from tui.client_panel import _body


@pytest.fixture(scope="module")
def server() -> Iterator[Supervisor]:
    sup = Supervisor(ServerConfig(model="many_accepts", workers=2))
    try:
        sup.start()
        yield sup
    finally:
        sup.stop()


def _us(t: float) -> int:
    return int(t * 1e6)


def run_in_process(url: str, level: LoadLevel, engine: str) -> tuple[LoadResult, list[tuple]]:
    """Run the driver in this process, recording the timestamps of every completed request
    as the driver hands them to the recorder (the debug hook: Recorder.ok wrapped)."""
    sample: list[tuple[Any, ...]] = []
    real_ok = Recorder.ok

    def ok(self: Recorder, *args: Any) -> None:
        sample.append(args)
        real_ok(self, *args)

    async def go() -> LoadResult:
        d = Driver(resolve(url), level, engine, lambda kind, payload: None)
        d.rec.ok = ok.__get__(d.rec)  # type: ignore[method-assign]
        return await d.run()

    return asyncio.run(go()), sample


def check_each_request_adds_up(sample: list[tuple], result: LoadResult) -> list[dict[str, int]]:
    """Per request: the five phases (as the recorder computes them) add up to its latency
    within 1 ms (in fact exactly: they are differences of the same timestamps); and the
    histograms hold exactly these values. Returns the phases of each request in us."""
    rows = []
    for _status, intended, start, conn, first, last, now in sample:
        assert intended <= start <= conn <= first <= last <= now
        total = _us(now) - _us(intended)
        ph = {
            "wait": _us(start) - _us(intended),
            "connect": _us(conn) - _us(start),
            "ttfb": _us(first) - _us(conn),
            "read": _us(last) - _us(first),
            "resume": _us(now) - _us(last),
        }
        assert abs(sum(ph.values()) - total) <= 1000, (ph, total)
        rows.append(ph)
    assert len(rows) == result.requests == result.latency.count
    for name, h in zip(PHASE_NAMES, result.phases, strict=True):
        assert h.count == len(rows), name
        assert h.sum_us == sum(r[name] for r in rows), name
        assert h.max_us == max(r[name] for r in rows), name
    assert sum(h.sum_us for h in result.phases) == result.latency.sum_us
    return rows


@pytest.mark.parametrize("engine", ["fast", "httpx"])
def test_each_requests_phases_add_up_to_its_latency_and_match_the_servers_delay(
    server: Supervisor, engine: str
) -> None:
    # 30 ms of io per request, a new connection for each: connect and ttfb are both real
    level = LoadLevel(clients=3, io_ms=30, keepalive=False, duration=1.5)
    result, sample = run_in_process(server.url, level, engine)
    rows = check_each_request_adds_up(sample, result)
    assert len(rows) >= 10
    for r in rows:
        assert r["connect"] > 0  # every request connected
        assert r["ttfb"] >= 29_000  # the server slept 30 ms before answering
        assert r["wait"] == 0  # closed loop: sent as soon as the user was free
    # the connect phase is the connect histogram's values, request by request
    assert result.connect.count >= len(rows)


def test_chained_keepalive_requests_add_up_too_and_reuse_their_connection(
    server: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a closed loop on keep-alive runs as callback chains in the fast engine
    chains = []
    real_burst = FastClient.burst

    def burst(self: FastClient, driver: Any, user: int) -> Any:
        fut = real_burst(self, driver, user)
        chains.append(fut is not None)
        return fut

    monkeypatch.setattr(FastClient, "burst", burst)
    level = LoadLevel(clients=3, io_ms=5, duration=1.0)
    result, sample = run_in_process(server.url, level, "fast")
    assert any(chains)  # the requests did run chained
    rows = check_each_request_adds_up(sample, result)
    assert len(rows) >= 30
    assert sum(1 for r in rows if r["connect"] > 0) == result.connect.count <= 3
    assert all(r["ttfb"] >= 4_500 for r in rows)  # the server slept 5 ms each time


def test_a_reused_connection_has_no_connect_phase_and_an_open_loop_counts_its_wait(
    server: Supervisor,
) -> None:
    # 2 connections, 20 ms each, asked for 200 req/s: at most 100/s go out, the rest wait
    level = LoadLevel(clients=2, io_ms=20, rate=200, duration=1.5)
    result, sample = run_in_process(server.url, level, "fast")
    rows = check_each_request_adds_up(sample, result)
    new = sum(1 for r in rows if r["connect"] > 0)
    assert new <= 2  # one connect per client, then reused
    assert result.connect.count == new
    assert sum(r["wait"] for r in rows) / len(rows) > 50_000  # waits grew past 50 ms
    late = rows[len(rows) // 2 :]
    assert all(r["wait"] > 0 for r in late)


def test_a_whole_run_in_the_generator_process_carries_phases_that_add_up(
    server: Supervisor,
) -> None:
    level = LoadLevel(clients=10, duration=1.5)
    with LoadRunner(server.url, level) as r:
        wait_until(lambda: (p := r.stats().phases) is not None and p.ttfb.count > 0, 10, "phases")
        result = r.wait(20)
    assert result is not None, r.error
    assert result.stats.phases is not None and result.phases
    assert [h.count for h in result.phases] == [result.latency.count] * 5
    assert sum(h.sum_us for h in result.phases) == result.latency.sum_us
    data = result.to_json_dict()
    means = sum(data["phases_ms"][n]["mean"] for n in PHASE_NAMES)  # type: ignore[index]
    assert means == pytest.approx(data["latency_ms"]["mean"], abs=0.001)  # type: ignore[index]
    # the summary shows them, one row each, under the caption that says how they add up
    out = io.StringIO()
    load_summary(Console(file=out, width=160), result)
    text = out.getvalue()
    for row in ("wait", "connect", "ttfb", "read", "gen delay"):
        assert f"  {row} " in text
    assert "= its latency" in text


def test_an_open_loop_rate_beyond_the_generator_is_called_the_generators_bottleneck(
    real_server,  # noqa: F811 - the fixture
) -> None:
    # nginx answers from C in a few us; a Python generator asked for 300,000 req/s cannot
    srv = real_server("nginx", workers=2)
    level = LoadLevel(clients=20, rate=300_000, duration=3.0)
    seen: list[LoadStats] = []
    with LoadRunner(f"http://127.0.0.1:{srv.port}/", level) as r:
        proc = psutil.Process(r.pid)
        wait_until(lambda: r.stats().generator_cpu is not None, 10, "a first window")
        c0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
        time.sleep(1.0)  # a window for the CPU share (checked against psutil below)
        c1, t1 = sum(proc.cpu_times()[:2]), time.monotonic()
        seen.append(r.stats())
        result = r.wait(20)
    assert result is not None, r.error
    live = seen[0]
    assert live.generator_cpu is not None
    assert abs(live.generator_cpu - (c1 - c0) / (t1 - t0)) < 0.3  # /proc's utime+stime
    s = result.stats
    assert s.bottleneck.startswith("load generator is the bottleneck"), s.bottleneck
    assert s.generator_bound
    assert s.bottleneck_share is not None and s.bottleneck_share >= 0.5
    assert s.schedule_lag is None  # the final figures are the run's, not a window's
    assert result.to_json_dict()["generator"]["bottleneck"] == s.bottleneck  # type: ignore[index]
    out = io.StringIO()
    load_summary(Console(file=out, width=200), result)
    assert "load generator is the bottleneck" in out.getvalue()


def test_a_light_load_raises_no_generator_warning(server: Supervisor) -> None:
    level = LoadLevel(clients=2, think_ms=20, duration=2.0)
    with LoadRunner(server.url, level) as r:
        wait_until(lambda: r.stats().generator_cpu is not None, 10, "a first window")
        live = r.stats()
        result = r.wait(20)
    assert result is not None, r.error
    assert live.generator_cpu is not None and live.generator_cpu < 0.5
    assert result.stats.bottleneck == ""
    assert result.stats.bottleneck_share == 0.0
    assert result.to_json_dict()["generator"]["bottleneck"] is None  # type: ignore[index]


def test_a_schedule_held_back_by_busy_connections_is_not_blamed_on_the_generator(
    server: Supervisor,
) -> None:
    # 2 connections x 50 ms = at most 40 req/s of the 300 asked: the server holds them;
    # the live warning is raised once the lag has held for selfwatch.SUSTAIN_S
    level = LoadLevel(clients=2, io_ms=50, rate=300, duration=4.0)
    flags: set[str] = set()
    with LoadRunner(server.url, level) as r:

        def warned() -> bool:
            s = r.stats()
            if s.bottleneck and s.running:
                flags.add(s.bottleneck)
            return bool(flags) or (s.elapsed > 0 and not s.running)  # (or it ended)

        wait_until(warned, 15, "the live warning")
        result = r.wait(20)
    assert result is not None, r.error
    assert flags and all(f.startswith("send schedule lags") for f in flags), flags
    assert "all 2 connections busy" in result.stats.bottleneck
    assert not result.stats.generator_bound
    out = io.StringIO()
    load_summary(Console(file=out, width=200), result)
    assert "send schedule lags" in out.getvalue() and "describe the client" not in out.getvalue()


def test_the_drain_at_the_end_is_not_read_as_the_generator_lagging(server: Supervisor) -> None:
    # requests of 1.9 s still in flight at the end, finishing one after another: for more
    # than the 1 s window the drain waits for them with some connections free while no
    # send is due any more (it read 'sends 0% of its 4 req/s with connections free')
    level = LoadLevel(clients=4, io_ms=1900, rate=4, duration=2.0)
    with LoadRunner(server.url, level) as r:
        result = r.wait(20)
    assert result is not None, r.error
    assert not result.stats.generator_bound, result.stats.bottleneck


def test_the_client_panel_shows_phases_and_the_warning_and_nothing_for_old_recordings() -> None:
    p = Percentiles(p50=1.0, p90=2.0, p99=7.47, p999=9.0, max=10.0, count=100)
    zero = Percentiles(count=100)
    stats = LoadStats(
        time=0.0, elapsed=5.0, level="x", clients=2, target_rate=None, running=True,
        paused=False, requests=100,
        phases=ClientPhases(wait=zero, connect=zero, ttfb=p, read=zero, resume=zero),
        bottleneck="load generator is the bottleneck: it uses 97% of a core",
    )  # fmt: skip
    text = _body(stats, 44)[0].plain
    assert "phases p99 wait 0  conn 0  ttfb 7.47 ms\n           read 0  gen 0\n" in text
    assert all(len(line) <= 44 for line in text.splitlines())  # the panel's width
    assert "load generator is the bottleneck: it uses\n97% of a core" in text
    old = LoadStats(
        time=0.0, elapsed=5.0, level="x", clients=2, target_rate=None, running=True,
        paused=False, requests=100,
    )  # fmt: skip
    text = _body(old, 44)[0].plain
    assert "phases" not in text and "bottleneck" not in text


def test_chained_requests_count_exactly_when_the_server_closes_every_seventh(
    start_server,
) -> None:
    # the fast engine chains a closed loop's requests by callback (FastClient.burst); the
    # server ending each connection after 7 requests ends a chain, the driver reconnects
    sup = start_server("many_accepts", workers=2, max_keepalive_requests=7)
    level = LoadLevel(clients=4, duration=1.5)
    before = sup.read().totals()["requests"]  # (the supervisor's readiness probe)
    with LoadRunner(sup.url, level) as r:
        result = r.wait(20)
    assert result is not None, r.error
    s = result.stats
    assert s.requests > 100 and not s.error_count, s.errors
    assert s.sent == s.requests + s.in_flight
    served = lambda: sup.read().totals()["requests"] - before  # noqa: E731
    wait_until(lambda: served() == s.requests, 5, "the server's count")
    assert result.connect.count * 7 >= s.requests  # at most 7 on each connection
    assert result.phases[2].count == s.requests  # ttfb of every request, chained or not


def test_phases_and_the_warning_survive_a_recording() -> None:
    from values.codec import decode, encode

    s = LoadStats(
        time=0.0, elapsed=1.0, level="x", clients=1, target_rate=None, running=True,
        paused=False, requests=3, phases=ClientPhases(ttfb=Percentiles(p50=1.5, count=3)),
        bottleneck="load generator is the bottleneck: it uses 95% of a core",
        generator_cpu=0.95, generator_cpu_s=2.0,
    )  # fmt: skip
    back = decode(LoadStats, encode(s))
    assert back == s and back.generator_bound


def test_a_retried_request_s_connect_phase_is_its_handshake_as_the_connect_figure_says() -> None:
    """A request sent on a keep-alive connection that closes under it without an answer
    (a killed cluster worker's) is sent again on a new one. Its connect phase ran from the
    first send, so the panel read "connect p99 4.14 ms" beside "phases p99 conn 5751 ms":
    the time lost on the dead connection is a wait for a usable connection, the connect
    phase the handshake that the connect figure counts."""
    hold = 0.3

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        with contextlib.suppress(asyncio.IncompleteReadError):  # the client's close
            await serve(reader, writer, served)

    async def serve(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, served: int
    ) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            if served == 1 and not handle.closed_one:  # type: ignore[attr-defined]
                handle.closed_one = True  # type: ignore[attr-defined]
                await asyncio.sleep(hold)  # the second request dies with its connection
                writer.close()
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            served += 1

    handle.closed_one = False  # type: ignore[attr-defined]
    sample: list[tuple[Any, ...]] = []
    real_ok = Recorder.ok

    def ok(self: Recorder, *args: Any) -> None:
        sample.append(args)
        real_ok(self, *args)

    async def go() -> LoadResult:
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        level = LoadLevel(clients=1, requests=4, duration=10)
        d = Driver(resolve(f"http://127.0.0.1:{port}/"), level, "fast", lambda k, p: None)
        d.rec.ok = ok.__get__(d.rec)  # type: ignore[method-assign]
        async with srv:
            return await d.run()

    result = asyncio.run(go())
    rows = check_each_request_adds_up(sample, result)
    assert result.stats.requests == 4 and not result.stats.errors
    assert result.connect.count == 2  # two handshakes: the first connection, the retry's
    retried = rows[1]
    assert retried["wait"] >= hold * 1e6 * 0.9, retried  # lost on the dead connection
    assert 0 < retried["connect"] < 100_000, retried  # the new connection's handshake
    # the phase and the connect figure now measure the same handshakes
    assert max(r["connect"] for r in rows) <= result.connect.max_us * 1.07 + 1
