"""The per-model suite: every model answers, keeps alive, takes concurrency, survives bad
input, counts exactly on its scoreboard, and leaves no process when stopped."""

from __future__ import annotations

import socket
import threading

import pytest

from conftest import assert_all_gone, get, read_response, wait_until
from plumbing.process import pid_alive

# (model, knobs) — small pools keep the suite quick; proc_spawn's default 250 has its own test.
MODEL_CASES = [
    ("single", {}),
    ("proc_spawn", {"workers": 8}),
    ("many_accepts", {"workers": 3}),
    ("many_accepts", {"workers": 3, "exclusive": True}),
    ("cluster", {"workers": 3}),
    ("reuseport", {"workers": 3}),
    ("prefork", {"start_servers": 3, "min_spare": 2, "max_spare": 4, "max_workers": 8}),
    ("worker", {"workers": 2, "threads_per_child": 4}),
    ("event", {"workers": 2, "threads_per_child": 2}),
    ("goroutines", {"workers": 3}),
]
IDS = [m + ("-exclusive" if k.get("exclusive") else "") for m, k in MODEL_CASES]
FAST_TIMEOUTS = {"timeout": 0.5, "keepalive_timeout": 2.0}


@pytest.fixture(params=MODEL_CASES, ids=IDS)
def server(request, start_server):
    model, knobs = request.param
    return start_server(model, **knobs, **FAST_TIMEOUTS)


def totals(sup) -> dict[str, int]:
    return sup.read().totals()


def test_a_request(server):
    r = get(server.port, "/")
    assert r.status == 200 and r.body == b"hello from serverscope\n"
    r = get(server.port, "/work?bytes=70000&cpu_ms=2&io_ms=5")
    assert r.status == 200 and len(r.body) == 70000
    assert get(server.port, "/work?cpu_ms=x").status == 400


def test_ten_requests_on_one_keepalive_connection(server):
    before = totals(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        buf = bytearray()
        for i in range(10):
            s.sendall(f"GET /work?bytes={i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            r = read_response(s, buf)
            assert r.status == 200 and len(r.body) == i
            assert r.headers.get("connection") != "close"
        # pipelined: three at once, answered in order
        s.sendall(b"".join(f"GET /work?bytes={n} HTTP/1.1\r\n\r\n".encode() for n in (3, 1, 2)))
        assert [len(read_response(s, buf).body) for _ in range(3)] == [3, 1, 2]
    wait_until(lambda: totals(server)["open"] == before["open"], what="the connection to close")
    after = totals(server)
    assert after["accepted"] - before["accepted"] == 1
    assert after["requests"] - before["requests"] == 13


def test_fifty_concurrent_connections_all_answered(server):
    statuses: list[int] = []
    gate = threading.Barrier(50)

    def client() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
            gate.wait()
            s.sendall(b"GET /work?io_ms=20 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            statuses.append(read_response(s).status)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [200] * 50


BAD_REQUESTS: list[tuple[bytes, int | None]] = [
    (b"HELLO\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nbroken header\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET /work?cpu_ms=-5 HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", None),  # truncated body, then EOF
    (b"GET /wor", None),  # truncated request line, then EOF
]


def send_bad(port: int, raw: bytes) -> int | None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            return read_response(s).status
        except (ConnectionError, OSError):
            return None


def test_bad_input_never_kills_a_worker(server):
    pids = server.pids()
    before = totals(server)
    got = [send_bad(server.port, BAD_REQUESTS[i % len(BAD_REQUESTS)][0]) for i in range(100)]
    want = [BAD_REQUESTS[i % len(BAD_REQUESTS)][1] for i in range(100)]
    assert got == want
    # a client that stops mid-request (and keeps the connection open) gets 408 and is closed
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: sl")
        assert read_response(s).status == 408
        assert s.recv(1) == b""
    assert all(pid_alive(p) for p in pids)
    assert server.pids() == pids
    assert get(server.port).status == 200
    wait_until(lambda: totals(server)["open"] == before["open"], what="connections to close")
    after = totals(server)
    assert after["accepted"] - before["accepted"] == 102
    # every answered bad request is a response on the scoreboard, plus the 408 and the good one
    assert after["requests"] - before["requests"] == sum(1 for w in want if w) + 2
    deaths = server.read().model.deaths
    assert deaths == 0


def test_scoreboard_counts_equal_what_was_sent(server):
    before = totals(server)
    sent_bytes = 0
    for n in range(7):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            buf = bytearray()
            for i in range(3):
                close = "Connection: close\r\n" if i == 2 else ""
                s.sendall(f"GET /work?bytes={n * 100} HTTP/1.1\r\n{close}\r\n".encode())
                r = read_response(s, buf)
                assert r.status == 200
                sent_bytes += len(r.body)
    wait_until(lambda: totals(server)["open"] == before["open"], what="connections to close")
    after = totals(server)
    assert after["accepted"] - before["accepted"] == 7
    assert after["requests"] - before["requests"] == 21
    assert after["bytes_sent"] - before["bytes_sent"] > sent_bytes  # bodies plus headers


def test_stop_leaves_no_process(start_server, request):
    model, knobs = MODEL_CASES[0]
    for model, knobs in MODEL_CASES:
        sup = start_server(model, **knobs)
        pids = sup.pids()
        assert len(pids) >= 1 and all(pid_alive(p) for p in pids)
        sup.stop()
        assert_all_gone(pids)
