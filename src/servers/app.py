"""The endpoints every model serves, with no I/O: routing, parameter checks, CPU burning.

`GET /` answers a tiny 200. `GET /work?cpu_ms=&io_ms=&bytes=` burns `cpu_ms` of this
thread's CPU time, then waits `io_ms` the way the model waits (the caller does the
waiting: a blocking sleep in process and thread models, a timer in event-loop models),
then answers exactly `bytes` bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from .http import Request

MAX_CPU_MS = 60_000
MAX_IO_MS = 60_000
MAX_BYTES = 16 * 1024 * 1024

HELLO = b"hello from serverscope\n"
_PAYLOAD = memoryview(b"x" * MAX_BYTES)


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
        return Reply(404, b"not found; try / or /work?cpu_ms=&io_ms=&bytes=\n")
    params = {"cpu_ms": 0.0, "io_ms": 0.0, "bytes": 0.0}
    limits = {"cpu_ms": MAX_CPU_MS, "io_ms": MAX_IO_MS, "bytes": MAX_BYTES}
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
