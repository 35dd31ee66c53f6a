"""The endpoints every model serves, with no I/O: routing, parameter checks, CPU burning.

`GET /` answers a tiny 200. `GET /work?cpu_ms=&io_ms=&bytes=` burns `cpu_ms` of this
thread's CPU time, then waits `io_ms` the way the model waits (the caller does the
waiting: a blocking sleep in process and thread models, a timer in event-loop models),
then answers exactly `bytes` bytes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from .http import Request

MAX_CPU_MS = 10_000  # per request; `serve --max-cpu-ms` sets it (root.py calls set_max_cpu_ms)
MAX_IO_MS = 60_000
MAX_BYTES = 16 * 1024 * 1024

HELLO = b"hello from serverscope\n"
_PAYLOAD = memoryview(b"x" * MAX_BYTES)


_max_cpu_ms: float = MAX_CPU_MS

# Tests only (SERVERSCOPE_FAULTS=1 in the server's environment): GET /__fault/thread-exit
# raises an exception no guard catches, so the test of `worker` and `event` can kill one
# worker thread on purpose and watch it be recorded and replaced.
FAULTS = os.environ.get("SERVERSCOPE_FAULTS") == "1"
FAULT_THREAD_EXIT = "/__fault/thread-exit"


class FaultExit(BaseException):
    """Raised by the test-only fault path: escapes every `except Exception`."""


def set_max_cpu_ms(value: float) -> None:
    """The per-request CPU ceiling of this process: a larger cpu_ms is answered 400.

    Without it one 256 KiB write of pipelined `cpu_ms=60000` requests queues ~115 hours
    of CPU."""
    global _max_cpu_ms
    _max_cpu_ms = value


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer; `io_ms` > 0 means: wait that long (model's way) before answering."""

    status: int
    body: bytes | memoryview
    io_ms: float = 0.0
    content_type: str = "text/plain"


def _number(name: str, raw: str, limit: float) -> float | str:
    try:
        value = float(raw)
    except ValueError:
        return f"{name} must be a number, got {raw!r}\n"
    if not (0 <= value <= limit):  # also rejects NaN
        return f"{name} must be between 0 and {limit:g}, got {raw}\n"
    return value


def handle(req: Request) -> Reply:
    """Route a request. CPU is burnt here; waiting for I/O is left to the caller."""
    method = req.method
    if method not in ("GET", "HEAD"):
        return Reply(405, b"only GET and HEAD\n")
    target = req.target
    if target == "/":
        return Reply(200, HELLO)
    path, _, query = target.partition("?")
    if path == "/":
        return Reply(200, HELLO)
    if path != "/work":
        if FAULTS and path == FAULT_THREAD_EXIT:
            raise FaultExit("fault injected by a test: this thread exits")
        return Reply(404, b"not found; try / or /work?cpu_ms=&io_ms=&bytes=\n")
    params = {"cpu_ms": 0.0, "io_ms": 0.0, "bytes": 0.0}
    limits = {"cpu_ms": _max_cpu_ms, "io_ms": MAX_IO_MS, "bytes": MAX_BYTES}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        return Reply(400, b"malformed query string\n")
    for key, raw in pairs:
        if key not in params:
            return Reply(400, f"unknown parameter {key!r}; use cpu_ms, io_ms, bytes\n".encode())
        value = _number(key, raw, limits[key])
        if isinstance(value, str):
            return Reply(400, value.encode())
        params[key] = value
    nbytes = int(params["bytes"])
    if nbytes != params["bytes"]:
        return Reply(400, b"bytes must be a whole number\n")
    burn_cpu(params["cpu_ms"])
    return Reply(
        200, _PAYLOAD[:nbytes], io_ms=params["io_ms"], content_type="application/octet-stream"
    )


def burn_cpu(cpu_ms: float) -> None:
    """Spin until this thread has used `cpu_ms` of CPU time (not wall-clock time)."""
    if cpu_ms <= 0:
        return
    end = time.thread_time() + cpu_ms / 1000.0
    x = 0
    while time.thread_time() < end:
        for i in range(2000):
            x ^= i
