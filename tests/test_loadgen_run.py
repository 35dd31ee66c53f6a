"""The load generator against real servers on 127.0.0.1: counts, rates, overflow, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from conftest import wait_until
from loadgen.levels import LoadLevel
from loadgen.result import LoadResult
from loadgen.runner import LoadRunner
from plumbing.process import pid_alive
from servers.config import ServerConfig
from servers.supervisor import Supervisor


@pytest.fixture(scope="module")
def fast_server() -> Iterator[Supervisor]:
    sup = Supervisor(ServerConfig(model="many_accepts", workers=2))
    try:
        sup.start()
        yield sup
    finally:
        sup.stop()


def run_to_end(url: str, level: LoadLevel, engine: str = "fast") -> LoadResult:
    with LoadRunner(url, level, engine) as r:
        result = r.wait(level.duration + 15)
        assert result is not None, r.error
        assert not r.running
    return result


def server_requests(sup: Supervisor) -> int:
    return sup.read().totals()["requests"]


# -- exact counts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "keepalive", "n"),
    [("fast", True, 3000), ("fast", False, 400), ("httpx", True, 150)],
)
def test_requests_sent_equal_requests_on_scoreboard(
    fast_server: Supervisor, engine: str, keepalive: bool, n: int
) -> None:
    before = fast_server.read().totals()
    level = LoadLevel(clients=8, keepalive=keepalive, requests=n, duration=30)
    result = run_to_end(fast_server.url, level, engine)
    s = result.stats
    assert s.sent == n and s.requests == n and s.status == {200: n} and not s.error_count
    wait_until(lambda: server_requests(fast_server) - before["requests"] == n, 3, "counts")
    after = fast_server.read().totals()
    assert after["requests"] - before["requests"] == n
    if not keepalive:  # a connection per request, each one timed
        assert result.connect.count == n
        assert after["accepted"] - before["accepted"] == n
    assert result.latency.count == n and result.stats.latency_ms.p50 > 0


# -- open loop -----------------------------------------------------------------------------


def test_open_loop_holds_500_per_second(fast_server: Supervisor) -> None:
    before = server_requests(fast_server)
    level = LoadLevel(clients=10, rate=500, duration=5)
    t0 = time.monotonic()
    result = run_to_end(fast_server.url, level)
    wall = time.monotonic() - t0
    served = server_requests(fast_server) - before
    # over the 5 s: what the server saw, what completed, and second by second
    assert 2375 <= served <= 2625, served
    assert 2375 <= result.requests <= 2625, result.requests
    assert 475 <= result.rps <= 525, result.rps
    series = result.rps_series[:5]
    assert len(series) == 5 and 475 <= sum(series) / 5 <= 525, series
    assert wall < 5 + 5  # ran its 5 s, not much more
    assert result.stats.target_rate == 500.0 and result.stats.errors == {}


def test_open_loop_counts_a_stall_as_latency_not_fewer_requests() -> None:
    """Coordinated omission: a server that stalls 0.6 s must show ~0.6 s latencies."""
    with raw_server("stall_once") as port:
        level = LoadLevel(clients=1, rate=50, duration=2, read_timeout=5)
        result = run_to_end(f"http://127.0.0.1:{port}/", level)
    assert 90 <= result.requests <= 110  # all 100 scheduled requests were sent
    assert result.latency.max_us >= 550_000
    # requests scheduled during the stall waited for it: a closed loop would show one
    assert result.latency.count_at_least(200.0) >= 10


# -- waiting clients ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["fast", "httpx"])
def test_requests_that_never_finish_are_counted_as_waiting_live_and_at_the_end(
    engine: str,
) -> None:
    """Two of six clients are served, four wait forever: the completed-only p99 stays in
    milliseconds, so the waiting ones must show as in flight, oldest age, and in the
    latency distribution that includes them; at the end, sent = completed + errors + cut."""
    level = LoadLevel(clients=6, think_ms=50, duration=2.5, read_timeout=30)
    with (
        raw_server("serve_two") as port,
        LoadRunner(f"http://127.0.0.1:{port}/", level, engine) as r,
    ):

        def stuck() -> bool:
            s = r.stats()
            return s.requests > 0 and (s.oldest_wait_ms or 0) >= 1000

        wait_until(stuck, 10, "an oldest wait of 1 s")
        live = r.stats()
        result = r.wait(20)
    assert live.in_flight >= 4, live
    # the stuck four are in the distribution with the waiting, at >= 1 s: its p99 shows them
    assert live.latency_all_ms.p99 >= 900, live.latency_all_ms
    assert live.latency_all_ms.max >= live.oldest_wait_ms - 1  # type: ignore[operator]
    assert live.latency_all_ms.count == live.latency_ms.count + live.in_flight + live.backlog
    assert result is not None, r.error
    s = result.stats
    assert s.in_flight == 4, s
    assert s.oldest_wait_ms is not None and s.oldest_wait_ms >= 2500, s.oldest_wait_ms
    assert s.sent == s.requests + s.error_count + s.in_flight
    assert result.latency_all is not None
    assert result.latency_all.count == result.latency.count + 4
    assert result.latency_all.count_at_least(2500) >= 4
    data = result.to_json_dict()
    assert data["in_flight"] == 4 and data["oldest_wait_ms"] >= 2500
    assert data["sent"] == data["requests"] + sum(data["errors"].values()) + data["in_flight"]
    assert data["latency_incl_waiting_ms"]["max"] >= 2500


def test_nothing_waiting_means_no_oldest_wait(fast_server: Supervisor) -> None:
    result = run_to_end(fast_server.url, LoadLevel(clients=2, requests=50, duration=10))
    s = result.stats
    assert s.in_flight == 0 and s.oldest_wait_ms is None
    assert s.sent == s.requests + s.error_count == 50
    assert result.to_json_dict()["oldest_wait_ms"] is None


# -- overflow, seen from the client --------------------------------------------------------


@pytest.mark.timeout(60)
def test_backlog_overflow_shows_as_one_second_connects() -> None:
    sup = Supervisor(ServerConfig(model="single", backlog=1))
    holder = None
    try:
        sup.start()
        holder = socket.create_connection(("127.0.0.1", sup.port), timeout=5)
        holder.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert holder.recv(4096).startswith(b"HTTP/1.1 200")  # the only worker is ours now
        level = LoadLevel(clients=6, keepalive=False, duration=4, connect_timeout=10)
        with LoadRunner(sup.url, level) as r:
            time.sleep(2.0)
            holder.close()
            holder = None
            result = r.wait(20)
        assert result is not None, r.error
        c = result.connect
        assert c.count >= 4
        assert c.max_us >= 1_000_000, c.percentiles()  # the SYN retransmit
        assert c.count_at_least(900.0) >= 2
        assert result.stats.connect_ms.max >= 1000.0
        assert result.requests > 0
    finally:
        if holder is not None:
            holder.close()
        sup.stop()


# -- errors ----------------------------------------------------------------------------------


@contextmanager
def raw_server(mode: str) -> Iterator[int]:
    """A tiny server in a thread: 'reset', 'silent', 'garbage', 'stall_once' or 'serve_two'."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    ls.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def serve_keepalive(c: socket.socket, stall: Callable[[], None]) -> None:
        c.settimeout(0.2)
        buf = b""
        while not stop.is_set():
            try:
                data = c.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                stall()
                c.sendall(ok)

    stalled = threading.Event()

    def noop() -> None:
        pass

    def stall_once() -> None:
        if not stalled.is_set() and time.monotonic() > started + 0.7:
            stalled.set()
            time.sleep(0.6)

    def loop() -> None:
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if mode == "reset":
                try:
                    c.recv(4096)
                except OSError:
                    pass
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            elif mode == "silent":
                held.append(c)  # read nothing, answer nothing
            elif mode == "garbage":
                try:
                    c.recv(4096)
                    c.sendall(b"SSH-2.0-not-http\r\n\r\n")
                except OSError:
                    pass
                held.append(c)
            elif mode == "stall_once":
                threading.Thread(target=serve_keepalive, args=(c, stall_once), daemon=True).start()
                held.append(c)
            elif mode == "serve_two":  # the first two connections are served, later ones held
                if len(held) < 2:
                    threading.Thread(target=serve_keepalive, args=(c, noop), daemon=True).start()
                held.append(c)

    started = time.monotonic()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield ls.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        ls.close()
        for c in held:
            c.close()


def free_closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def only_errors(result: LoadResult) -> dict[str, int]:
    assert result.requests == 0 and result.stats.status == {}
    return result.stats.errors


@pytest.mark.parametrize("engine", ["fast", "httpx"])
def test_closed_port_is_refused(engine: str) -> None:
    level = LoadLevel(clients=2, duration=0.6)
    errors = only_errors(run_to_end(f"http://127.0.0.1:{free_closed_port()}/", level, engine))
    assert set(errors) == {"refused"} and errors["refused"] >= 2


@pytest.mark.parametrize("engine", ["fast", "httpx"])
def test_resetting_server_is_reset(engine: str) -> None:
    with raw_server("reset") as port:
        result = run_to_end(f"http://127.0.0.1:{port}/", LoadLevel(clients=2, duration=0.6), engine)
    errors = only_errors(result)
    assert set(errors) == {"reset"} and errors["reset"] >= 2


@pytest.mark.parametrize("engine", ["fast", "httpx"])
def test_silent_server_is_read_timeout(engine: str) -> None:
    with raw_server("silent") as port:
        level = LoadLevel(clients=2, duration=1.2, read_timeout=0.4)
        result = run_to_end(f"http://127.0.0.1:{port}/", level, engine)
    errors = only_errors(result)
    assert set(errors) == {"read_timeout"} and errors["read_timeout"] >= 2


def test_garbage_is_bad_response() -> None:
    with raw_server("garbage") as port:
        result = run_to_end(f"http://127.0.0.1:{port}/", LoadLevel(clients=2, duration=0.5))
    errors = only_errors(result)
    assert set(errors) == {"bad_response"}


# -- control: level changes, pause, stop, live stats -----------------------------------------


@pytest.mark.timeout(60)
def test_level_change_pause_resume_stop(fast_server: Supervisor) -> None:
    r = LoadRunner(fast_server.url, LoadLevel(clients=4, rate=50, duration=30))
    try:
        r.start()
        wait_until(lambda: r.stats().requests >= 20, 5, "first requests")
        r.set_level(LoadLevel(clients=6, rate=400, duration=30))
        time.sleep(1.0)  # takes effect within 1 s
        a, ta = r.stats().requests, time.monotonic()
        time.sleep(1.0)
        b, tb = r.stats().requests, time.monotonic()
        # per second of the time that passed (a sleep on a busy machine overruns its 1 s)
        assert 280 <= (b - a) / (tb - ta) <= 520, (b - a, tb - ta)  # ~400 a second, not ~50
        assert r.stats().clients == 6 and r.stats().target_rate == 400
        r.pause()
        time.sleep(0.6)
        c = r.stats()
        assert c.paused
        time.sleep(1.0)
        assert r.stats().requests == c.requests  # nothing while paused
        r.resume()
        wait_until(lambda: r.stats().requests > c.requests + 50, 3, "requests after resume")
        # stats() is a cheap read, fit for a 4 Hz TUI
        t = time.perf_counter()
        for _ in range(1000):
            r.stats()
        assert (time.perf_counter() - t) / 1000 < 0.001
        t = time.monotonic()
        result = r.stop()
        assert time.monotonic() - t < 4
        assert result is not None and not r.running and not result.stats.running
        assert result.stats.requests == result.latency.count
    finally:
        r.stop()
    assert r.pid is not None and not pid_alive(r.pid)


def test_generator_dies_with_its_parent_on_sigkill() -> None:
    script = (
        "import sys, time\n"
        "from loadgen.runner import LoadRunner\n"
        "from loadgen.levels import LoadLevel\n"
        f"r = LoadRunner('http://127.0.0.1:{free_closed_port()}/', LoadLevel(duration=60))\n"
        "r.start()\n"
        "print(r.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        wait_until(lambda: pid_alive(child), 5, "generator up")
        time.sleep(0.3)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        wait_until(lambda: not pid_alive(child), 5, "generator to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# -- the command line ----------------------------------------------------------------------


def test_cli_load_prints_summary_and_writes_json(
    fast_server: Supervisor, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from commands.main import main

    out = tmp_path / "r.json"
    args = ["load", fast_server.url + "/", "--clients", "4", "--requests", "500"]
    assert main([*args, "--duration", "10", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Requests/sec:" in text and "Latency" in text and "Connect" in text
    data = json.loads(out.read_text())
    assert data["requests"] == 500 and data["status"] == {"200": 500}
    assert data["errors"]["refused"] == 0 and data["rps"] > 0
    for key in ("latency_ms", "connect_ms"):
        assert set(data[key]) >= {"p50", "p90", "p99", "p999", "max"}
    assert 0 < data["latency_ms"]["p50"] <= data["latency_ms"]["p99"] <= data["latency_ms"]["max"]


def test_think_time_and_ramp_shape_the_load(fast_server: Supervisor) -> None:
    level = LoadLevel(clients=4, think_ms=100, ramp=1.0, duration=1.5)
    with LoadRunner(fast_server.url, level) as r:
        wait_until(lambda: r.stats().requests > 0, 3, "first request")
        early = r.stats()
        result = r.wait(10)
    assert result is not None
    assert early.open_connections < 4  # clients arrive over 1 s, not at once
    # each client: one request on arrival then one per ~100 ms; arrivals at 0, .25, .5,
    # .75 s of 1.5 s: 16 + 13 + 11 + 8 = 48 at most (64 without the ramp)
    assert 36 <= result.requests <= 50, result.requests
    assert result.connect.count == 4
