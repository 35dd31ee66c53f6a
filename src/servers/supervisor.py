"""Start and stop a model from the caller's process (CLI, TUI, tests, benchmarks).

The supervisor binds the listening socket(s) itself, so a busy port is reported here,
in one line, before anything runs; and it keeps a copy of each, so the telemetry can read
every accept queue with TCP_INFO. It creates the scoreboard (a memfd), then starts the
model's root process (`servers.root`) with both, through the one launcher
(`plumbing.child`), and returns once the initial workers are up and a request is answered.
The root dies with its parent (the launcher's PR_SET_PDEATHSIG) and every worker with the
root, even when the parent is SIGKILLed; stopping signals the root's whole process group.

Call `start` from a thread that lives as long as the server: the kernel's parent-death
signal fires when the *thread* that started the root exits.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from typing import IO

from plumbing.child import Child
from plumbing.process import python_env, raise_nofile_limit

from . import models, root
from .config import ServerConfig
from .scoreboard import Scoreboard
from .slots import ScoreboardSnapshot, State

STOP_GRACE = 1.0  # seconds from SIGTERM to SIGKILL for a root that does not exit


class ServerError(RuntimeError):
    """The server could not start or died; the message is one line for the user."""


class BindError(ServerError):
    pass


def bind_listeners(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """Open `count` listening sockets on host:port (SO_REUSEPORT when count > 1)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise BindError(f"cannot listen on {host}:{port}: unknown host ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    socks: list[socket.socket] = []
    try:
        if count > 1 and port:
            # a plain bind first: joining someone else's SO_REUSEPORT group must fail loudly
            probe = socket.socket(family, socket.SOCK_STREAM)
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(addr)
            finally:
                probe.close()
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(addr)
            if not port:  # the others join the port the kernel chose
                addr = s.getsockname()
                port = addr[1]
            s.listen(backlog)
    except OSError as e:
        for s in socks:
            s.close()
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        if e.errno == errno.EADDRINUSE:
            hint = "another program is listening there; pick another --port or stop it"
        elif e.errno == errno.EACCES:
            hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE; pick --port above 1023"
        elif e.errno == errno.EADDRNOTAVAIL:
            hint = "that address is not on this machine; use --host 127.0.0.1"
        else:
            hint = e.strerror or str(e)
        raise BindError(f"cannot listen on {where}: {os.strerror(e.errno or 0)} ({hint})") from None
    return socks


LOCAL_FOR_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # every interface -> its loopback


class Supervisor:
    def __init__(self, config: ServerConfig, *, stderr: IO[bytes] | int | None = None) -> None:
        self.spec = models.spec(config.model)
        self.config = self.spec.resolve(config)
        self._stderr_target = stderr  # None: kept, capped, its last line shown on failure
        self.child: Child | None = None  # the root process
        self.listeners: list[socket.socket] = []
        self.scoreboard: Scoreboard | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> Supervisor:
        cfg = self.config
        raise_nofile_limit()
        self.listeners = bind_listeners(cfg.host, cfg.port, self.spec.listeners(cfg), cfg.backlog)
        self.port = self.listeners[0].getsockname()[1]
        self.config = cfg = cfg.with_(port=self.port)
        self.scoreboard = Scoreboard.create()
        fds = [s.fileno() for s in self.listeners]
        env = python_env()
        env[root.ENV_SCOREBOARD] = str(self.scoreboard.fd)
        env[root.ENV_LISTENERS] = ",".join(map(str, fds))
        self.child = Child(
            [sys.executable, "-m", "servers.root", cfg.to_json()],
            name=cfg.model,
            env=env,
            pass_fds=[self.scoreboard.fd, *fds],
            stderr=self._stderr_target,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        if cfg.migrate:  # the workers alone hold their sockets: a closing one's queue moves
            for s in self.listeners:  # (the telemetry reads them by sock_diag instead)
                s.close()
            self.listeners = []
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.scoreboard is not None and self.child is not None
        deadline = time.monotonic() + timeout
        h = self.scoreboard.header
        while True:
            if self.child.poll() is not None:
                raise ServerError(self._death_message())
            if h.ready:
                snap = self.scoreboard.read()
                first = snap.slots[: h.expected]
                if len(first) >= h.expected and all(s.state != State.STARTING for s in first):
                    break
            if time.monotonic() > deadline:
                raise ServerError(f"{self.config.model} did not start within {timeout:g} s")
            time.sleep(0.01)
        left = max(1.0, deadline - time.monotonic())
        if not probe(LOCAL_FOR_ANY.get(self.config.host, self.config.host), self.port, left):
            if self.child.poll() is not None:
                raise ServerError(self._death_message())
            raise ServerError(
                f"{self.config.model} started but did not answer GET / in {left:.0f} s"
            )
        # the server has closed the probe's connection before we report ready, so callers
        # start from settled counters
        while self.read().totals()["open"] and time.monotonic() < deadline:
            time.sleep(0.005)

    def _death_message(self) -> str:
        assert self.child is not None
        said = self.scoreboard.header.error.decode(errors="replace") if self.scoreboard else ""
        return self.child.death_message("exited at start", reason=said or None)

    def begin_stop(self) -> None:
        """Tell the root and every worker to stop (SIGTERM to the process group), and
        return at once; `stop` waits for them. Safe from any thread: quitting calls it
        first, so the server dies while the caller gets to `stop`."""
        if self.child is not None:
            self.child.begin_stop()

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """Stop the root and its workers together (SIGTERM to the whole group: workers die
        at once, not when the root gets round to them); SIGKILL the group if it lingers."""
        if self.child is not None:
            self.child.stop(timeout)
            self.child.close()
        for s in self.listeners:
            s.close()
        self.listeners = []
        if self.scoreboard is not None:
            self.scoreboard.close()
            self.scoreboard = None

    def __enter__(self) -> Supervisor:
        return self.start() if self.child is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what is running ---------------------------------------------------------------
    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def local_url(self) -> str:
        """The URL to load it through from this machine: a server listening on every
        interface (0.0.0.0, ::) is loaded through loopback, which the load generator takes."""
        host = LOCAL_FOR_ANY.get(self.config.host, self.config.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    @property
    def exit_code(self) -> int | None:
        """The root's exit code once it has exited (negative: the signal), else None."""
        return self.child.poll() if self.child is not None else None

    @property
    def root_pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def read(self) -> ScoreboardSnapshot:
        assert self.scoreboard is not None, "server not started"
        return self.scoreboard.read()

    def worker_pids(self) -> list[int]:
        """Distinct pids of the live workers (processes; thread workers share theirs)."""
        if self.scoreboard is None:
            return []
        seen: dict[int, None] = {}
        for s in self.read().slots:
            if s.state not in (State.EMPTY, State.DEAD) and s.pid and s.pid != self.root_pid:
                seen[s.pid] = None
        return list(seen)

    def pids(self) -> list[int]:
        """The root and every live worker process."""
        if self.child is None:
            return []
        return [self.child.pid, *self.worker_pids()]


def probe(host: str, port: int, timeout: float) -> bool:
    """True once GET / answers 200 (retrying until `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(
                (host, port), timeout=max(0.1, deadline - time.monotonic())
            ) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False
