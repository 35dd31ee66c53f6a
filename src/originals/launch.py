"""Start and stop an original the way the supervisor starts a Python model.

    with Original(ServerConfig(model="c:proc_spawn", workers=4)) as srv:
        srv.url, srv.root_pid, srv.pids()     # ready: it has answered GET /

`start` builds the original if needed (C, Go), picks a free loopback port (or checks the
given one, so a busy port is one line before anything runs), writes Apache's config,
and starts the original under `originals.watchdog`, which owns its whole process tree:
the tree goes when `stop` is called, when serverscope exits, and when serverscope is
SIGKILLed (the watchdog sees its stdin pipe close). The watchdog is started through the one
launcher (plumbing.child), which keeps the tree's stderr to its latest mebibyte for the
death message. It returns once the original has its workers and answers `GET /`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import psutil

from plumbing.child import Child
from plumbing.process import pid_alive, python_env, raise_nofile_limit, readable
from servers.config import ServerConfig
from servers.supervisor import BindError, ServerError, bind_listeners, probe

from . import apache, build
from .registry import OriginalSpec, spec

SRC = Path(__file__).resolve().parent
# seconds between SIGTERM and SIGKILL for the original's group. C, Node and Go exit at
# once on SIGTERM; Apache reaps its children with backoff polls (16, 64, 256 ms, 1 s),
# measured 0.1-1.5 s to stop under load, with nothing to save: no SysV IPC (ipcs shows
# none), and its run directory goes with the watchdog. Quitting must take <= 0.5 s.
STOP_GRACE = 0.2
READY_ENV = "SERVERSCOPE_READY_FILE"  # an original that can tell touches it when all serve
BUSY_MARKERS = ("already in use", "EADDRINUSE", "make_sock: could not bind")
# the originals say what went wrong in a line of their own; a runtime's trace follows it
OWN_WORDS = ("cannot ", "building ", "bad ", "unknown ")


def free_port(host: str) -> int:
    s = bind_listeners(host, 0, 1, 1)[0]
    try:
        return s.getsockname()[1]
    finally:
        s.close()


def command(sp: OriginalSpec, cfg: ServerConfig, run_dir: Path) -> list[str]:
    """The command line that runs `sp` with `cfg` (port already chosen)."""
    common = [
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
        "--backlog",
        str(cfg.backlog),
        "--keepalive-timeout",
        f"{cfg.keepalive_timeout:g}",
        "--timeout",
        f"{cfg.timeout:g}",
    ]
    ka_cap = ["--max-keepalive-requests", str(cfg.limits.max_keepalive_requests)]
    common += ["--max-cpu-ms", repr(float(cfg.max_cpu_ms))]  # Apache: its generated config
    workers = ["--workers", str(cfg.workers)] if cfg.workers is not None else []
    if sp.kind == "c":
        return [str(build.binary(sp)), *common, *ka_cap, *workers]
    if sp.kind == "go":
        go_flags = [f"-{common[i][2:]}={common[i + 1]}" for i in range(0, len(common), 2)]
        # pprof's goroutine dump on a loopback port of its own (readers.stackgo reads it)
        pprof = f"-pprof-addr=127.0.0.1:{free_port('127.0.0.1')}"
        return [str(build.binary(sp)), *go_flags, f"-procs={cfg.workers}", pprof]
    if sp.kind == "node":
        node = sp.toolchain.path()
        if node is None:
            raise build.BuildError(sp.missing_message())
        return [node, str(SRC / sp.source), *common, *ka_cap, *workers]
    httpd = sp.toolchain.path()
    mods = apache.modules_dir()
    if httpd is None or mods is None:
        raise build.BuildError(sp.missing_message())
    mpm = sp.name.split(":", 1)[1]
    conf = apache.write_config(cfg, mpm, run_dir, mods)
    return [httpd, "-f", str(conf), "-DFOREGROUND"]


def expected_children(sp: OriginalSpec, cfg: ServerConfig) -> int:
    """Worker processes to wait for before calling it ready (0: do not wait)."""
    if sp.name == "c:proc_spawn" or sp.kind == "node":
        return cfg.workers or 0
    return 0


class Original:
    def __init__(self, config: ServerConfig, *, stderr: IO[bytes] | int | None = None) -> None:
        self.spec = spec(config.model)
        self.config = self.spec.resolve(config)
        self._stderr_target = stderr  # None: kept, capped, its last line shown on failure
        self.watchdog: Child | None = None
        self.root_pid = 0
        self.port = 0
        self.run_dir: Path | None = None
        self._seen: set[int] = set()
        self._ready_file: Path | None = None
        self.pprof_port: int | None = None  # Go: its pprof listener (goroutine dumps)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Original:
        sp, cfg = self.spec, self.config
        if not sp.toolchain.present:
            raise build.BuildError(sp.missing_message())
        raise_nofile_limit()
        attempts = 1 if cfg.port else 3  # a free port can be taken before the original binds
        for attempt in range(attempts):
            port = cfg.port
            if port:
                bind_listeners(cfg.host, port, 1, 1)[0].close()  # busy: BindError, one line
            else:
                port = free_port(cfg.host)
            self.config = cfg.with_(port=port)
            try:
                self._start_once(timeout)
                return self
            except BindError:
                if attempt + 1 == attempts:
                    raise
        return self

    def _start_once(self, timeout: float) -> None:
        sp, cfg = self.spec, self.config
        self.port = cfg.port
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"serverscope-{sp.name.replace(':', '-')}-"))
        try:
            argv = command(sp, cfg, self.run_dir)
        except BaseException:
            self._cleanup()
            raise
        pprof = [a for a in argv if a.startswith("-pprof-addr=")]
        self.pprof_port = int(pprof[0].rsplit(":", 1)[1]) if pprof else None
        env = python_env()
        self._ready_file = self.run_dir / "ready" if sp.kind == "node" else None
        if self._ready_file is not None:
            env[READY_ENV] = str(self._ready_file)
        wd_spec = {"argv": argv, "grace": STOP_GRACE, "run_dir": str(self.run_dir)}
        self.watchdog = Child(
            [sys.executable, "-m", "originals.watchdog", json.dumps(wd_spec)],
            name=cfg.model,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_target,
            # it learns of our death from its stdin, not from a signal that could kill it
            # before it has taken the original's tree down and removed the run directory
            die_with_parent=False,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self.watchdog is not None and self.watchdog.stdout is not None
        deadline = time.monotonic() + timeout
        out = self.watchdog.stdout
        line = out.readline() if readable(out.fileno(), timeout) else b""
        if not line.strip().isdigit():
            self.watchdog.wait(1.0)  # at EOF it is exiting: its code and last words
            raise ServerError(self._death_message("did not start"))
        self.root_pid = int(line)
        want = expected_children(self.spec, self.config)
        name = self.config.model
        while True:
            if self.watchdog.poll() is not None:
                raise self._failure()
            ready_file = self._ready_file is None or self._ready_file.exists()
            if ready_file and len(self.pids()) - 1 >= want:
                break
            if time.monotonic() > deadline:
                raise ServerError(f"{name} did not start its {want} workers in {timeout:g} s")
            time.sleep(0.01)
        if not self._probe(deadline):
            if self.watchdog.poll() is not None:
                raise self._failure()
            raise ServerError(f"{name} started but did not answer GET / in {timeout:g} s")
        self.pids()  # remember every pid seen, for stop's check

    def _probe(self, deadline: float) -> bool:
        """GET / until it answers 200, in short tries: between them, a dead original is
        noticed (whoever holds the port may accept and never answer)."""
        assert self.watchdog is not None
        tries = 0
        while self.watchdog.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            tries += 1
            if probe(self.config.host, self.port, min(left, 0.5 * tries)):
                return True
        return False

    def _failure(self) -> ServerError:
        lines = self.watchdog.stderr_lines() if self.watchdog is not None else []
        if any(m in ln for ln in lines for m in BUSY_MARKERS):
            return BindError(
                f"cannot listen on {self.config.host}:{self.port}: Address already in use "
                "(another program is listening there; pick another --port or stop it)"
            )
        return ServerError(self._death_message("exited at start"))

    def _death_message(self, what: str) -> str:
        assert self.watchdog is not None
        return self.watchdog.death_message(what, prefer=lambda ln: ln.startswith(OWN_WORDS))

    def begin_stop(self) -> None:
        """Tell the watchdog to take the original down, and return at once; `stop` waits.
        Safe from any thread: quitting calls it first."""
        if self.watchdog is not None:
            self.watchdog.begin_stop()

    def stop(self, timeout: float = STOP_GRACE + 5.0) -> None:
        """Stop the original's whole tree; SIGKILL whatever outlives the watchdog."""
        wd = self.watchdog
        if wd is not None:
            self.pids()
            wd.stop(timeout)
            for pid in self._seen:  # the watchdog was killed before it finished
                if pid != wd.pid and pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            wd.close()
        self._cleanup()

    def _cleanup(self) -> None:
        if self.run_dir is not None and self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Original:
        return self.start() if self.watchdog is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what is running ---------------------------------------------------------------
    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.watchdog is not None and self.watchdog.running

    @property
    def watchdog_pid(self) -> int:
        return self.watchdog.pid if self.watchdog else 0

    def worker_pids(self) -> list[int]:
        """The original's processes below its root (httpd children, Node and C workers)."""
        if not self.root_pid:
            return []
        try:
            kids = psutil.Process(self.root_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [k.pid for k in kids if pid_alive(k.pid)]

    def pids(self) -> list[int]:
        """The original's root and every live process under it (not the watchdog)."""
        if not self.root_pid or not pid_alive(self.root_pid):
            return []
        pids = [self.root_pid, *self.worker_pids()]
        self._seen.update(pids)
        return pids
