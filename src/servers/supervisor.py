"""Start and stop a model from the caller's process (CLI, TUI, tests, benchmarks).

The supervisor binds the listening socket(s) itself, so a busy port is reported here,
in one line, before anything runs; and it keeps a copy of each, so the telemetry can read
every accept queue with TCP_INFO. It creates the scoreboard (a memfd), then starts the
model's root process (`servers.root`) with both, and returns once the initial workers are
up and a request is answered. The root, and every worker it forks, dies with its parent
(PR_SET_PDEATHSIG) even when the parent is SIGKILLed.

Call `start` from a thread that lives as long as the server: the kernel's parent-death
signal fires when the *thread* that forked the root exits.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO

from plumbing.process import pid_alive, python_env, raise_nofile_limit, readable

from . import models, root
from .config import ServerConfig
from .scoreboard import Scoreboard, ScoreboardSnapshot, State

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
        self._stderr_target = stderr  # None: a temp file whose tail is shown on failure
        self._errfile: IO[bytes] | None = None
        self._errpump: threading.Thread | None = None
        self.proc: subprocess.Popen[bytes] | None = None
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
        env[root.ENV_PARENT] = str(os.getpid())
        env[root.ENV_SCOREBOARD] = str(self.scoreboard.fd)
        env[root.ENV_LISTENERS] = ",".join(map(str, fds))
        stderr = self._stderr_target
        pipe_w = -1
        if stderr is None:
            # a temp file (its tail is shown on failure), fed through a pipe by a thread that
            # keeps it under STDERR_CAP: a log flood must not fill the disk (issue 11)
            self._errfile = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
            pipe_r, pipe_w = os.pipe()
            self._errpump = threading.Thread(
                target=_pump_capped, args=(pipe_r, self._errfile), daemon=True
            )
            self._errpump.start()
            stderr = pipe_w
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servers.root", cfg.to_json()],
            pass_fds=[self.scoreboard.fd, *fds],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
        if pipe_w >= 0:
            os.close(pipe_w)  # the server holds the only write end: EOF ends the pump
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.scoreboard is not None and self.proc is not None
        deadline = time.monotonic() + timeout
        h = self.scoreboard.header
        while True:
            if self.proc.poll() is not None:
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
            if self.proc.poll() is not None:
                raise ServerError(self._death_message())
            raise ServerError(
                f"{self.config.model} started but did not answer GET / in {left:.0f} s"
            )
        # the server has closed the probe's connection before we report ready, so callers
        # start from settled counters
        while self.read().totals()["open"] and time.monotonic() < deadline:
            time.sleep(0.005)

    def _death_message(self) -> str:
        code = self.proc.returncode if self.proc else None
        msg = self.scoreboard.header.error.decode(errors="replace") if self.scoreboard else ""
        if not msg and self._errfile is not None:
            if self._errpump is not None:
                self._errpump.join(1.0)  # the server is gone: the pump reaches EOF
            with _errlock:
                self._errfile.seek(0)
                text = self._errfile.read().decode(errors="replace")
            lines = [ln for ln in text.splitlines() if ln]
            msg = lines[-1] if lines else ""
        return f"{self.config.model} exited at start (code {code})" + (f": {msg}" if msg else "")

    def begin_stop(self) -> None:
        """Tell the root and every worker to stop (SIGTERM to the process group), and
        return at once; `stop` waits for them. Safe from any thread: quitting calls it
        first, so the server dies while the caller gets to `stop` (issue 18)."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            # the group goes with its leader, the root, which we have not reaped: not reused
            _signal_group(proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """Stop the root and its workers together (SIGTERM to the whole group: workers die
        at once, not when the root gets round to them); SIGKILL the group if it lingers."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            pids = self.pids()
            _signal_group(proc.pid, signal.SIGTERM)
            wait_exit(proc, timeout)
            _kill_group(proc.pid)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pid in pids:  # workers the root could not reap (it was killed first)
                if pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        elif proc is not None:
            _kill_group(proc.pid)
        for s in self.listeners:
            s.close()
        self.listeners = []
        if self.scoreboard is not None:
            self.scoreboard.close()
            self.scoreboard = None
        if self._errpump is not None:
            self._errpump.join(1.0)
            self._errpump = None
        if self._errfile is not None:
            with _errlock:
                self._errfile.close()
            self._errfile = None

    def __enter__(self) -> Supervisor:
        return self.start() if self.proc is None else self

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
        return self.proc is not None and self.proc.poll() is None

    @property
    def root_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

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
        if self.proc is None:
            return []
        return [self.proc.pid, *self.worker_pids()]


STDERR_CAP = 1024 * 1024  # bytes of a server's stderr kept by `run` and the TUI
_errlock = threading.Lock()


def _pump_capped(fd: int, out: IO[bytes], cap: int = STDERR_CAP) -> None:
    """Copy `fd` into `out` until EOF, keeping `out` under `cap` bytes: when it would grow
    past it, it is emptied and restarted with a line counting what was dropped, so the
    latest lines (what a failure message shows) are kept."""
    dropped = 0
    try:
        while chunk := os.read(fd, 65536):
            with _errlock:
                if out.closed:
                    continue  # stopped: read on to EOF so the server never blocks
                if out.tell() + len(chunk) > cap:
                    dropped += out.tell()
                    out.seek(0)
                    out.truncate()
                    out.write(f"[serverscope: {dropped} earlier bytes dropped]\n".encode())
                out.write(chunk[-cap // 2 :])
                out.flush()
    except (OSError, ValueError):
        pass
    finally:
        os.close(fd)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to `timeout` s for `proc` to exit (True) and reap it. Woken by the exit
    itself through a pidfd: Popen.wait(timeout) polls, up to 50 ms late."""
    if proc.poll() is not None:
        return True
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (Linux < 5.3): Popen's polling
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        readable(fd, timeout)  # poll, not select: fds past 1024 are common here
    finally:
        os.close(fd)
    return proc.poll() is not None


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
