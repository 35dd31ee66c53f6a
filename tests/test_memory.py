"""Issue 23: bounded memory whatever the clients do, and slow clients that cannot hold a
worker past the request-read timeout.

Per model (small pools, one server per model for both memory tests, the resets first): 100
clients that reset in the middle of a 16 MiB reply must leave the tree within 10% of its
size before (PSS), and 100 clients that ask for 16 MiB and read nothing must cost it under
+64 MiB (the old code built each reply whole: +1.4 GiB for many_accepts, +2.2 GiB for
worker and event with their default pools).
bench/bench_memory.py runs the same attacks at the models' own pool sizes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import attacks
import fuzzing
from attacks import MIB
from conftest import assert_all_gone, read_response, wait_until
from loadgen.engine import resolve
from loadgen.engine_fast import FastEngine
from loadgen.levels import PRESETS, LoadError, LoadLevel
from loadgen.recorder import Recorder
from loadgen.runner import LoadRunner
from servers import aio, loops, models, reqtimeout
from servers.acceptor import Acceptor
from servers.config import ConfigError, ServerConfig
from servers.http import Limits
from servers.models import MODEL_NAMES
from servers.scoreboard import Scoreboard
from servers.supervisor import Supervisor

# connections a model serves at once with fuzzing.FUZZ_KNOBS: the rest wait in its queue
AT_ONCE = {
    "single": 1,
    "proc_spawn": 4,
    "prefork": 3,  # StartServers; more children may come
    "worker": 8,
    "event": 8,
}
GROWTH_CAP = 64 * MIB
RETURN_RATIO = 1.10
APACHE_SHAPED = ("single", "proc_spawn", "prefork", "worker", "event")


@pytest.fixture(scope="module", params=MODEL_NAMES)
def server(request: pytest.FixtureRequest) -> Iterator[Supervisor]:
    model = request.param
    sup = Supervisor(ServerConfig(model=model, **fuzzing.FUZZ_KNOBS[model])).start()  # type: ignore[arg-type]
    try:
        yield sup
    finally:
        pids = sup.pids()
        sup.stop()
        assert_all_gone(pids)


def _closed(sup: Supervisor, timeout: float = 10.0) -> None:
    wait_until(lambda: sup.read().totals()["open"] == 0, timeout, "every connection closed")


def test_resets_in_the_middle_of_big_replies_leave_a_model_its_size(server: Supervisor):
    """Finding 2: each reply was built whole and the allocator kept what it got."""
    model = server.config.model
    _closed(server)
    # the same traffic with small replies first: the connections' own first-use costs
    # (objects, buffers, pages copied from the master) are in the size before
    attacks.resets(server.port, 20, nbytes=1 * MIB, read=64 * 1024)
    _closed(server)
    before = attacks.settle(server.pids)
    done = attacks.resets(server.port, 100)
    assert done >= 90, f"{model}: only {done} of 100 clients got 256 KiB before resetting"
    _closed(server)
    after = attacks.settle(server.pids)
    assert after.pss <= before.pss * RETURN_RATIO, (
        f"{model}: {before.pss / MIB:.1f} MiB before, {after.pss / MIB:.1f} MiB after"
    )


def test_clients_that_do_not_read_cost_a_model_its_write_buffers_only(server: Supervisor):
    """Finding 1: each connection held its 16 MiB reply until --timeout."""
    model = server.config.model
    expected = AT_ONCE.get(model, 100)
    with attacks.Peak(server.pids) as peak:
        base = peak.peak
        socks = attacks.non_readers(server.port, 100)
        try:
            wait_until(
                lambda: attacks.writing(server.port) >= expected, 10, f"{expected} replies begun"
            )
            end = time.monotonic() + 0.3  # the replies are built before the first byte goes
            while time.monotonic() < end:
                time.sleep(0.02)
        finally:
            attacks.close_all(socks)
    grown = peak.peak - base
    assert grown.pss < GROWTH_CAP, f"{model}: +{grown.pss / MIB:.0f} MiB with 100 non-readers"
    _closed(server)


def test_blank_lines_in_a_body_do_not_count_as_pipelined_requests(start_server):
    """Finding 6 on a live model (the HTTP layer is every model's): the 32nd plain GET after
    a POST whose body held forty blank lines got 400."""
    sup = start_server("single")
    body = b"a\r\n\r\n" * 40
    with socket.create_connection(("127.0.0.1", sup.port), timeout=10) as s:
        buf = bytearray()
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert read_response(s, buf).status == 405
        for i in range(40):
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s, buf).status == 200, i


# -- the cap on large bodies in flight (asyncio) ---------------------------------------------
def test_large_replies_past_a_loops_budget_are_refused_503():
    """A connection holds at most a piece of its body; past the loop's cap of bodies in
    flight, a large reply is 503 (small ones are served)."""
    board = Scoreboard.create()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ready = threading.Event()
    state: dict[str, object] = {}

    def run() -> None:
        loop = loops.new_loop()
        worker = aio.AsyncWorker(loop, board.claim(0), Limits())
        worker.max_streams = 2
        state["loop"], state["worker"] = loop, worker
        listener.setblocking(False)
        acceptor = Acceptor(listener, "worker")

        def on_accept() -> None:
            while (conn := acceptor.accept()) is not None:
                loops.adopt(loop, conn, worker.protocol)

        loop.add_reader(listener.fileno(), on_accept)
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    socks = attacks.non_readers(port, 2)
    try:
        worker = state["worker"]
        assert isinstance(worker, aio.AsyncWorker)
        wait_until(lambda: worker.streams == 2, 5, "two large bodies in flight")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(attacks.request())
            r = read_response(s)
            assert r.status == 503 and b"too many large replies" in r.body
            s.sendall(b"GET /work?bytes=100 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s).status == 200
    finally:
        attacks.close_all(socks)
        loop = state["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        listener.close()
        board.close()


# -- finding 8: the request-read timeout ----------------------------------------------------
def test_request_read_timeout_follows_apaches_rules():
    rules = reqtimeout.parse(reqtimeout.APACHE_DEFAULT)
    assert rules.header == reqtimeout.Stage(20, 40, 500)
    assert rules.body == reqtimeout.Stage(20, None, 500)
    clock = reqtimeout.ReadClock(rules, timeout=60, now=0.0)
    assert clock.deadline == 20  # nothing yet: 20 s
    clock.received(1)
    assert clock.deadline == pytest.approx(20.002)  # a byte a second earns nothing much
    clock.received(4999)
    assert clock.deadline == 30  # 1 s per 500 bytes ...
    clock.received(50_000)
    assert clock.deadline == 40  # ... never past 40 s
    clock.body(now=5.0, already=1000)
    assert clock.deadline == 27  # 20 s from the head's end, +2 s for 1,000 bytes
    clock.received(10**6)
    assert clock.deadline == 60  # no maximum for the body, but Timeout's
    off = reqtimeout.parse("header=0 body=0")
    assert off.header is None and off.body is None
    assert reqtimeout.ReadClock(off, 60, 0.0).deadline == 60
    assert reqtimeout.parse("handshake=0 header=10").header == reqtimeout.Stage(10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("header", "expected STAGE="),
        ("header=x", "expected seconds"),
        ("header=20-10,MinRate=500", "must be larger"),
        ("header=20-40", "needs MinRate"),
        ("header=20,MinRate=0", "MinRate must be"),
        ("header=20,Rate=5", "MinRate="),
        ("header=20 header=30", "given twice"),
        ("cookie=5", "expected STAGE="),
        ("", "expected STAGE="),
    ],
)
def test_a_bad_request_read_timeout_is_refused_in_one_line(text: str, message: str):
    with pytest.raises(ConfigError, match=message) as err:
        models.spec("prefork").resolve(ServerConfig(model="prefork", request_read_timeout=text))
    assert str(err.value).startswith("--request-read-timeout: ") and "\n" not in str(err.value)


def test_the_apache_shaped_models_take_apaches_request_read_timeout_by_default():
    apache = reqtimeout.parse(reqtimeout.APACHE_DEFAULT)
    for name in MODEL_NAMES:
        cfg = models.spec(name).resolve(ServerConfig(model=name))
        assert cfg.limits.read_timeout == (apache if name in APACHE_SHAPED else None), name
    with pytest.raises(ConfigError, match="has no --request-read-timeout"):
        models.spec("goroutines").resolve(
            ServerConfig(model="goroutines", request_read_timeout="header=5")
        )


@pytest.mark.parametrize("model", ["single", "event"])
def test_a_slow_client_frees_a_blocking_worker_at_the_request_read_timeout(
    start_server, model: str
):
    """Finding 8: a client sending a byte a second held a worker for Timeout (60 s)."""
    knobs: dict[str, object] = {"workers": 1, "threads_per_child": 1} if model == "event" else {}
    sup = start_server(model, request_read_timeout="header=0.5-1,MinRate=500", **knobs)
    t0 = time.monotonic()
    (slow,) = attacks.slow_senders(sup.port, 1)
    try:
        wait_until(lambda: sup.read().totals()["open"] == 1, 5, "the slow client taken")
        with socket.create_connection(("127.0.0.1", sup.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            while attacks.trickle([slow]) and time.monotonic() - t0 < 0.3:
                time.sleep(0.1)  # a byte every 0.1 s: 10 bytes a second, far below MinRate
            r = read_response(s)  # served once the slow client is gone
            waited = time.monotonic() - t0
        assert r.status == 200
        assert 0.45 <= waited < 5, f"{model}: the worker was freed after {waited:.1f} s"
        slow.settimeout(5)
        assert slow.recv(100).startswith(b"HTTP/1.1 408 ")
    finally:
        slow.close()


def test_the_slowloris_preset_sends_each_request_a_byte_at_a_time():
    level = PRESETS["slowloris"].with_(trickle_ms=5).check()
    assert "a byte every 5 ms" in level.describe()
    chunks: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not b"".join(chunks).endswith(b"\r\n\r\n"):
            data = await reader.read(1024)
            if not data:
                return
            chunks.append(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def go() -> tuple[int, float]:
        srv = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        engine = FastEngine(resolve(f"http://127.0.0.1:{port}/"), level, Recorder(time.monotonic()))
        await engine.start()
        client = engine.client()
        t = time.monotonic()
        try:
            status = await client.request()
        finally:
            await client.close()
            await engine.aclose()
            srv.close()
        return status, time.monotonic() - t

    status, took = asyncio.run(go())
    request = b"".join(chunks)
    assert status == 200 and request.startswith(b"GET / HTTP/1.1\r\n")
    assert len(chunks) >= len(request) // 2  # byte by byte (two may meet in one read)
    assert took >= (len(request) - 1) * 0.005 * 0.9
    with pytest.raises(LoadError, match="fast engine"):
        LoadRunner("http://127.0.0.1:1/", level, "httpx").start()
    with pytest.raises(LoadError, match="trickle"):
        LoadLevel(trickle_ms=-1).check()
