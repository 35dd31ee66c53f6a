"""Shared test helpers: start a model on a free loopback port, talk raw HTTP to it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest

from plumbing.process import pid_alive
from servers.config import ServerConfig
from servers.supervisor import Supervisor


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def read_response(sock: socket.socket, buf: bytearray | None = None) -> Response:
    """Read one HTTP/1.1 response (Content-Length framed) from a blocking socket."""
    data = buf if buf is not None else bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response (got {bytes(data)!r})")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    data[:] = body[length:]
    return Response(status, headers, bytes(body[:length]))


def get(port: int, path: str = "/", *, close: bool = True, timeout: float = 10.0) -> Response:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        conn = "Connection: close\r\n" if close else ""
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{conn}\r\n".encode())
        return read_response(s)


def wait_until(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def assert_all_gone(pids: list[int], timeout: float = 5.0) -> None:
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout, f"pids {pids} to exit")


def terminate_all(procs: Iterable[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM to each (all at once), then each reaped; one still running after `grace`
    seconds is killed."""
    procs = list(procs)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def start_server() -> Iterator[Callable[..., Supervisor]]:
    """Start models on free loopback ports; every one is stopped, and its pids checked gone."""
    started: list[Supervisor] = []

    def start(model: str, **knobs: object) -> Supervisor:
        sup = Supervisor(ServerConfig(model=model, **knobs))  # type: ignore[arg-type]
        sup.start()
        started.append(sup)
        return sup

    yield start
    for sup in started:
        pids = sup.pids()
        sup.stop()
        assert_all_gone(pids)


def pytest_configure(config: pytest.Config) -> None:
    """The tests stop what they start with SIGINT, as a user's Ctrl-C would. A runner
    started in the background of a shell script (`.ci/run &`, nohup) has SIGINT ignored,
    and every process it starts would inherit that (Python then installs no handler of its
    own: `http.server` or `serverscope attach` would never stop on it). Seen: every test
    that SIGINTs a child timed out in such a run. The default disposition, back."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
