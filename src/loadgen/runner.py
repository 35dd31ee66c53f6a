"""Run the load generator in its own process, and read its results from this one.

    with LoadRunner("http://127.0.0.1:8080", PRESETS["burst"]) as run:   # starts it
        while run.running:
            show(run.stats())          # cheap: the latest published LoadStats
            time.sleep(0.25)
        result = run.result()          # LoadResult, with the full histograms

The generator is `python -m loadgen.worker` (a fresh interpreter, not a fork of this
possibly threaded process), so the TUI and the sampler never wait on it. It is started
through the one launcher (plumbing.child): a session of its own, its stderr kept to the
latest mebibyte, SIGKILLed with its whole group on `kill`, and when its parent dies
(PR_SET_PDEATHSIG); that signal fires when the *thread* that started it exits, so call
`start()` from a thread that lives as long as the run (the main thread, normally). It also
stops when its stdin closes, and after `level.duration` seconds whatever happens.

Results come back over a pipe, five snapshots a second; a daemon thread here drains the
pipe and keeps the latest, so `stats()` is an attribute read. Control goes the other way,
one JSON line per command; a new level takes effect at the child's next loop turn.
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict

from plumbing.child import Child
from plumbing.process import python_env, raise_nofile_limit

from .engine import ENGINES, resolve
from .levels import LoadError, LoadLevel
from .result import LoadResult
from .stats import LoadStats

FD_MARGIN = 64  # descriptors besides one per client: pipes, stdio, the event loop's own


def check_fd_limit(clients: int) -> int:
    """Raise the soft file limit as far as allowed; one-line LoadError if still too low."""
    limit = raise_nofile_limit()
    need = clients + FD_MARGIN
    if need > limit:
        raise LoadError(
            f"{clients} clients need about {need} open files but the limit is {limit}: "
            f"raise it with `ulimit -n {need}` (as root, or raise the hard limit first)"
        )
    return limit


class LoadRunner:
    def __init__(
        self,
        url: str,
        level: LoadLevel,
        engine: str = "fast",
        allow_remote: bool = False,
        *,
        use_uvloop: bool = True,
    ) -> None:
        if engine not in ENGINES:
            raise LoadError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
        self.url = url
        self.level = level.check()
        self.engine = engine
        self.allow_remote = allow_remote
        self.use_uvloop = use_uvloop
        self.child: Child | None = None  # the generator process
        self._stats = self._initial_stats()
        self._result: LoadResult | None = None
        self._error: str | None = None
        self._finished = threading.Event()
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    def _initial_stats(self) -> LoadStats:
        lvl = self.level
        return LoadStats(
            time=time.monotonic(),
            elapsed=0.0,
            level=lvl.name,
            clients=lvl.clients,
            target_rate=lvl.rate,
            running=False,
            paused=False,
            requests=0,
            engine=self.engine,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LoadRunner:
        """Check the target and the file limit, then start the generator process.

        Call from a long-lived thread (see the module's docstring)."""
        if self.child is not None:
            return self
        target = resolve(self.url, self.allow_remote)
        if self.engine == "fast" and target.scheme != "http":
            raise LoadError("the fast engine speaks plain http only; use --engine httpx for TLS")
        self._check_engine(self.level)
        check_fd_limit(self.level.clients)
        args = {
            "url": self.url,
            "allow_remote": self.allow_remote,
            "engine": self.engine,
            "level": asdict(self.level),
            "uvloop": self.use_uvloop,
        }
        self._stats = self._initial_stats()
        self.child = Child(
            [sys.executable, "-m", "loadgen.worker", json.dumps(args)],
            name="load generator",
            env=python_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, name="loadgen-reader", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        child = self.child
        assert child is not None and child.stdout is not None
        out = child.stdout
        try:
            while True:
                head = out.read(4)
                if len(head) < 4:
                    break
                (n,) = struct.unpack("<I", head)
                data = out.read(n)
                if len(data) < n:
                    break
                kind, payload = pickle.loads(data)
                if kind == "stats":
                    self._stats = payload
                elif kind == "final":
                    self._result = payload
                    self._stats = payload.stats
                elif kind == "error":
                    self._error = payload
        finally:
            child.wait()
            if self._result is None and self._error is None:
                self._error = child.death_message()
            if self._stats.running:
                self._stats = _replace_running(self._stats)
            self._finished.set()

    def _send(self, msg: dict[str, object]) -> None:
        child = self.child
        if child is None or child.stdin is None or self._finished.is_set():
            return
        with self._lock:
            try:
                child.stdin.write(json.dumps(msg).encode() + b"\n")
                child.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def set_level(self, level: LoadLevel) -> None:
        """Change the load while it runs (effective within a second)."""
        level.check()
        self._check_engine(level)
        if level.clients > self.level.clients:
            check_fd_limit(level.clients)
        self.level = level
        self._send({"op": "level", "level": asdict(level)})

    def _check_engine(self, level: LoadLevel) -> None:
        if level.trickle_ms and self.engine != "fast":
            raise LoadError("a request sent a byte at a time (--trickle) needs the fast engine")

    def pause(self) -> None:
        self._send({"op": "pause"})

    def resume(self) -> None:
        self._send({"op": "resume"})

    def wait(self, timeout: float | None = None) -> LoadResult | None:
        """Wait for the run to end by itself; the result (None: failed or timed out)."""
        self._finished.wait(timeout)
        if self._finished.is_set():
            self._cleanup()
        return self._result

    def stop(self, timeout: float = 5.0) -> LoadResult | None:
        """Stop the run (requests in flight get up to 2 s) and return its result."""
        child = self.child
        if child is None:
            return None
        self._send({"op": "stop"})
        if not self._finished.wait(timeout):
            child.kill()
            self._finished.wait(5.0)
        self._cleanup()
        return self._result

    def kill(self) -> None:
        """End the run now: SIGKILL the generator's group, with no drain and no result (for
        quitting, where nobody reads it; `stop` waits up to 2 s of drain for requests in
        flight, all of it when a starved server holds them). Returns at once; `stop` or
        `wait` then reaps the process."""
        if self.child is not None:
            self.child.kill()

    def _cleanup(self) -> None:
        child = self.child
        if child is not None:
            child.stop(grace=0)  # SIGKILL whatever is left of its group; reaped
        if self._reader is not None:
            self._reader.join(5.0)
        if child is not None:
            child.close()

    def __enter__(self) -> LoadRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it shows ---------------------------------------------------------------------
    def stats(self) -> LoadStats:
        """The latest live figures (an attribute read: safe to call at any rate)."""
        return self._stats

    def result(self) -> LoadResult | None:
        """The whole run's result with the full histograms, once it has ended."""
        return self._result

    @property
    def error(self) -> str | None:
        """Why the run failed, one line (None while running or when it went well)."""
        return self._error

    @property
    def running(self) -> bool:
        return self.child is not None and not self._finished.is_set()

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None


def _replace_running(s: LoadStats) -> LoadStats:
    from dataclasses import replace

    return replace(s, running=False)
