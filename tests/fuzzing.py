"""Malformed HTTP requests, and a harness that throws them at a running model.

Shared by tests/test_hardening.py (2,000 requests per model, a few seconds each) and
bench/bench_fuzz.py (10,000+ per model, by hand). Each request goes on its own connection,
followed by a half-close (SHUT_WR), so an incomplete request ends at once with EOF instead of
waiting for the server's --timeout: the run is bounded by the server's speed, not by timers.

The mix is seeded, so a failure can be replayed: random bytes, one-byte mutations of a valid
request, over-long numbers (a Content-Length of up to 5,000 digits: issue 11's finding 1),
over-long targets and header sections, HTTP/0.9 and HTTP/2 lines, bare LF, NUL, bad bodies,
pipelines mixing good and bad requests, and /work parameters out of range.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

VALID = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(3)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] = rng.randrange(256)
        elif op == 1:
            b.insert(i, rng.randrange(256))
        elif b:
            del b[i]
    return bytes(b)


def _cases(rng: random.Random) -> list[Callable[[], bytes]]:
    def digits(n: int) -> bytes:
        return b"9" * n

    return [
        lambda: rng.randbytes(rng.randint(1, 300)),
        lambda: rng.randbytes(rng.randint(1, 60)) + b"\r\n\r\n",
        lambda: _mutate(rng, VALID),
        lambda: _mutate(rng, b"GET /work?cpu_ms=1&bytes=10 HTTP/1.1\r\nHost: t\r\n\r\n"),
        lambda: (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: "
            + digits(rng.choice([19, 20, 100, 4301, 5000]))
            + b"\r\n\r\n"
        ),
        lambda: b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        lambda: b"GET / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        lambda: b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        lambda: b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        lambda: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        lambda: b"GET /" + b"a" * rng.choice([8200, 9000, 20000]) + b" HTTP/1.1\r\n\r\n",
        lambda: b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * rng.randint(500, 2000) + b"\r\n",
        lambda: b"GET /\r\n",
        lambda: b"GET / HTTP/2.0\r\n\r\n",
        lambda: b"GET / HTTP/1.1\n\n",
        lambda: b"GET / HTTP/1.1\r\nHost: \x00\r\n\r\n",
        lambda: b"GET /\x00 HTTP/1.1\r\n\r\n",
        lambda: b"\r\n" * rng.randint(1, 50) + VALID,
        lambda: VALID * rng.randint(1, 10) + rng.randbytes(20),
        lambda: VALID + b"GET / HTTP/1.1\r\nContent-Length: " + digits(5000) + b"\r\n\r\n",
        lambda: (
            b"GET /work?cpu_ms="
            + rng.choice([b"nan", b"inf", b"-1", b"1e9", b"99999999", b"%00", b"1&cpu_ms"])
            + b" HTTP/1.1\r\n\r\n"
        ),
        lambda: (
            b"GET /work?bytes="
            + rng.choice([b"1.5", b"-3", b"1e20", b"17000000", b"x"])
            + b" HTTP/1.1\r\n\r\n"
        ),
        lambda: (
            b"GET /work?" + b"&".join([b"cpu_ms=0"] * rng.randint(1, 500)) + b" HTTP/1.1\r\n\r\n"
        ),
        lambda: b"GET /%ff%fe?\xff\xfe HTTP/1.1\r\n\r\n",
        lambda: b"G" * rng.randint(1, 20000),
        lambda: b"GET / HTTP/1.1\r\n" + b"X: " + b"v" * 9000 + b"\r\n\r\n",
        lambda: b"GET / HTTP/1.1\r\nConnection: " + rng.randbytes(30) + b"\r\n\r\n",
        lambda: b"",
    ]


def requests(n: int, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    cases = _cases(rng)
    return [rng.choice(cases)() for _ in range(n)]


@dataclass
class FuzzResult:
    sent: int = 0
    answered: int = 0  # got a status line back
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # reset, timeout: no status line


def _one(port: int, data: bytes, timeout: float) -> int | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may answer and close before reading it all
            got = b""
            while len(got) < 16:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
    except OSError:
        return None
    if got.startswith(b"HTTP/1.1 ") and got[9:12].isdigit():
        return int(got[9:12])
    return None


def run(
    port: int,
    n: int,
    *,
    seed: int = 11,
    threads: int = 4,
    timeout: float = 3.0,
    alive: Callable[[], bool] = lambda: True,
) -> FuzzResult:
    """Send `n` requests; stops early (fewer sent) once `alive()` is false."""
    res = FuzzResult()
    reqs = requests(n, seed)
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, n, 100):
            if not alive():
                break
            for status in pool.map(lambda d: _one(port, d, timeout), reqs[start : start + 100]):
                res.sent += 1
                if status is None:
                    res.errors += 1
                else:
                    res.answered += 1
                    res.statuses[status] = res.statuses.get(status, 0) + 1
    return res


def tree_rss(pids: list[int]) -> int:
    """Sum of VmRSS over `pids`, in bytes (pids that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def answers_root(port: int, timeout: float = 1.0) -> bool:
    """GET / answered 200 within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            got = b""
            while b"\r\n" not in got:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
    except OSError:
        return False
    return got.startswith(b"HTTP/1.1 200")


# small pools so that nine models fit a 2-core CI machine
FUZZ_KNOBS: dict[str, dict[str, object]] = {
    "single": {},
    "proc_spawn": {"workers": 4},
    "prefork": {"start_servers": 3, "min_spare": 2, "max_spare": 4, "max_workers": 8},
    "worker": {"workers": 2, "threads_per_child": 4},
    "event": {"workers": 2, "threads_per_child": 4},
    "cluster": {"workers": 2},
    "many_accepts": {"workers": 2},
    "reuseport": {"workers": 2},
    "goroutines": {"workers": 2},
}
