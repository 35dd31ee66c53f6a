"""Client-side probes for `serverscope seed`: small bounded experiments whose figures
come from the client (the X-Worker header, connect times, a new client's wait) or from
/proc (CPU in nanoseconds from schedstat), so they are ground truth for any server.

Every probe is bounded: socket timeouts on every call, a fixed number of connections or a
fixed number of seconds, loopback only.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

IO_TIMEOUT = 10.0  # seconds for any one socket call


def _request(path: str, *, close: bool) -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: serverscope\r\n{conn}\r\n".encode()


def read_head(sock: socket.socket, buf: bytearray) -> dict[str, str]:
    """Read one response from `sock` (headers and its Content-Length body); its headers,
    lower-cased, with ':status'. Bytes past the response stay in `buf`."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {":status": lines[0].split(" ")[1] if " " in lines[0] else ""}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    need = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < need:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    buf[:] = body[need:]
    return headers


def _connect(port: int, timeout: float = IO_TIMEOUT) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def sequential_workers(port: int, n: int) -> Counter[str]:
    """`n` connections one after another, one request each: X-Worker of each answer."""
    counts: Counter[str] = Counter()
    for _ in range(n):
        with _connect(port) as s:
            s.sendall(_request("/", close=True))
            counts[read_head(s, bytearray()).get("x-worker", "?")] += 1
    return counts


def burst_workers(port: int, n: int) -> Counter[str]:
    """`n` connections opened at once, then one request on each: X-Worker of each answer."""
    socks = [_connect(port) for _ in range(n)]
    counts: Counter[str] = Counter()
    try:
        for s in socks:
            s.sendall(_request("/", close=True))
        for s in socks:
            counts[read_head(s, bytearray()).get("x-worker", "?")] += 1
    finally:
        for s in socks:
            s.close()
    return counts


def new_client_wait(port: int, idle: int, limit: float) -> tuple[float | None, int]:
    """`idle` keep-alive clients each make one request and then sit idle on their
    connection; a new client then asks GET /. Returns (seconds until it was answered, or
    None if not within `limit`; how many idle clients were answered at all)."""
    socks: list[socket.socket] = []
    answered = 0
    try:
        for _ in range(idle):
            s = _connect(port, timeout=0.5)
            socks.append(s)
            try:
                s.sendall(_request("/", close=False))
                read_head(s, bytearray())
                answered += 1
            except (TimeoutError, OSError):
                pass  # not served: every worker is held already; it stays in line
        t0 = time.monotonic()
        try:
            with _connect(port, timeout=limit) as s:
                s.sendall(_request("/", close=True))
                read_head(s, bytearray())
        except (TimeoutError, OSError):
            return None, answered
        return time.monotonic() - t0, answered
    finally:
        for s in socks:
            s.close()


def connect_times(port: int, clients: int, path: str) -> list[float]:
    """`clients` connections at once, each asking `path`: each one's connect time (s)."""
    out: list[float] = []
    lock = threading.Lock()

    def one() -> None:
        t0 = time.monotonic()
        try:
            with _connect(port, timeout=IO_TIMEOUT) as s:
                took = time.monotonic() - t0
                s.sendall(_request(path, close=True))
                read_head(s, bytearray())
        except OSError:
            return
        with lock:
            out.append(took)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 3)
    return out


def concurrent_wall(port: int, clients: int, path: str) -> float:
    """Wall seconds for `clients` simultaneous requests of `path` to all be answered."""
    t0 = time.monotonic()
    connect_times(port, clients, path)
    return time.monotonic() - t0


def cpu_ns(pids: list[int]) -> int:
    """CPU time of these processes, every thread's, in ns (/proc/PID/task/TID/schedstat)."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue  # a thread that just exited
    return total


def host_busy_s() -> float:
    """CPU seconds the whole host has been busy (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / (os.sysconf("SC_CLK_TCK") or 100)


def cores_used(
    port: int, pids: Callable[[], list[int]], clients: int, seconds: float
) -> tuple[float, float]:
    """Keep `clients` keep-alive clients busy with CPU-heavy requests for `seconds`; the
    server's CPU seconds per wall second over that time (1.0 = one core), and the cores
    the rest of the host (this client included) used meanwhile: on a shared machine the
    second says how many cores were left to take."""
    stop = threading.Event()

    def loop() -> None:
        try:
            with _connect(port) as s:
                buf = bytearray()
                while not stop.is_set():
                    s.sendall(_request("/work?cpu_ms=20", close=False))
                    read_head(s, buf)
        except OSError:
            return

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # every client in flight before measuring
    watched = pids()
    before, host0, t0 = cpu_ns(watched), host_busy_s(), time.monotonic()
    stop.wait(seconds)
    used, wall = (cpu_ns(watched) - before) / 1e9, time.monotonic() - t0
    others = host_busy_s() - host0 - used
    stop.set()
    for t in threads:
        t.join(IO_TIMEOUT)
    return used / wall, max(0.0, others / wall)
