"""Clients that misbehave on purpose, and what they cost a model's memory.

Shared by tests/test_memory.py (a short version per model, in CI) and bench/bench_memory.py
(the attacks at full size, by hand). Memory is read from /proc/PID/smaps_rollup: RSS, and
PSS (proportional set size: a page shared by k processes counts 1/k in each), summed over
the server's processes, so a forked model's shared pages are counted once.

The attacks:
- `non_readers`: clients with a 4 KiB receive buffer that ask for a big reply and read
  nothing (the server's reply waits in its buffers until --timeout).
- `resets`: clients that read the first bytes of a big reply, then reset (SO_LINGER 0).
- `full_reads`: concurrent clients that read big replies in full (as 20 `curl`s).
- `slow_senders`: clients that send a request one byte at a time (slowloris).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

MIB = 1024 * 1024
BIG = 16 * MIB  # the largest /work?bytes= reply
RCVBUF = 4096


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes, summed over the processes
    pss: int

    def __sub__(self, other: Memory) -> Memory:
        return Memory(self.rss - other.rss, self.pss - other.pss)

    def mib(self) -> str:
        return f"RSS {self.rss / MIB:7.1f} PSS {self.pss / MIB:7.1f} MiB"


def memory(pids: Iterable[int]) -> Memory:
    """RSS and PSS of `pids` from /proc/PID/smaps_rollup (a process that is gone counts 0)."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
    return Memory(rss, pss)


class Peak:
    """Samples memory(pids()) every `period` s in a thread; `peak` is the largest PSS seen."""

    def __init__(self, pids: Callable[[], list[int]], period: float = 0.02) -> None:
        self.pids = pids
        self.period = period
        self.peak = memory(pids())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            m = memory(self.pids())
            if m.pss > self.peak.pss:
                self.peak = m

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        m = memory(self.pids())
        if m.pss > self.peak.pss:
            self.peak = m


def request(nbytes: int = BIG) -> bytes:
    return f"GET /work?bytes={nbytes} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def non_readers(port: int, n: int, nbytes: int = BIG) -> list[socket.socket]:
    """`n` connections, each asking for `nbytes` and reading nothing; the caller closes them."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)  # before connect
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            s.sendall(request(nbytes))
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks: Iterable[socket.socket], *, reset: bool = False) -> None:
    for s in socks:
        try:
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass


def _reset_one(port: int, nbytes: int, read: int, timeout: float) -> int:
    """Read `read` bytes of a reply, then reset; the bytes read."""
    got = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request(nbytes))
            while got < read:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    return got


def resets(
    port: int,
    n: int,
    *,
    concurrency: int = 20,
    nbytes: int = BIG,
    read: int = 256 * 1024,
    timeout: float = 10.0,
) -> int:
    """`n` clients, `concurrency` at a time, each resetting after `read` bytes of its reply.
    Returns how many got that far (a reply was in progress when they reset)."""
    with ThreadPoolExecutor(concurrency) as pool:
        got = list(pool.map(lambda _: _reset_one(port, nbytes, read, timeout), range(n)))
    return sum(1 for g in got if g >= read)


def _read_one(port: int, nbytes: int, timeout: float) -> int:
    total = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request(nbytes).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            while chunk := s.recv(1 << 20):
                total += len(chunk)
    except OSError:
        pass
    return total


def full_reads(port: int, n: int, *, nbytes: int = BIG, timeout: float = 60.0) -> int:
    """`n` concurrent clients reading a reply of `nbytes` in full; how many got it all."""
    with ThreadPoolExecutor(n) as pool:
        got = list(pool.map(lambda _: _read_one(port, nbytes, timeout), range(n)))
    return sum(1 for g in got if g > nbytes)


SLOW_START = b"GET / HTTP/1.1\r\nX-Slow: "  # a valid start; the header never ends


def slow_senders(port: int, n: int) -> list[socket.socket]:
    """`n` connections that have sent the start of a request (SLOW_START), whose header
    line `trickle` makes longer a byte at a time (slowloris: the head never completes)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
            s.sendall(SLOW_START)
    except BaseException:
        close_all(socks)
        raise
    return socks


def trickle(socks: list[socket.socket], byte: bytes = b"x") -> int:
    """One more byte on each connection; how many connections took it (others were closed)."""
    alive = 0
    for s in socks:
        try:
            s.sendall(byte)
            alive += 1
        except OSError:
            pass
    return alive


def send_queues(port: int) -> list[int]:
    """Send-Q of each established server-side socket on `port`, from `ss` (the kernel's
    view: bytes the server has written that the client has not acknowledged)."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    queues = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            queues.append(int(parts[1]))
    return queues


def writing(port: int) -> int:
    """How many of the server's connections on `port` have a reply waiting in the kernel."""
    return sum(1 for q in send_queues(port) if q > 0)


def settle(pids: Callable[[], list[int]], *, rounds: int = 3, timeout: float = 5.0) -> Memory:
    """The memory once it stops falling (freed pages are returned asynchronously: a
    thread's exit, a worker's replacement); the last reading after `timeout` otherwise."""
    last = memory(pids())
    end = time.monotonic() + timeout
    steady = 0
    while time.monotonic() < end and steady < rounds:
        time.sleep(0.1)
        m = memory(pids())
        steady = steady + 1 if m.pss >= last.pss - 256 * 1024 else 0
        last = m
    return last
