"""One live experiment: a model, a load against it, and the sampler watching both.

The TUI, the headless `run`, `compare` and the guided demos all drive a `Session`; they
differ only in how they draw its snapshots. Every process start and stop happens on the
session's own long-lived thread, because the kernel's parent-death signal (which makes
servers and load generators die with us, even on SIGKILL) fires when the *thread* that
started them exits.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from judging import stuck
from judging.events import LabEvent
from loadgen.levels import LoadLevel
from loadgen.runner import LoadRunner
from loadgen.stats import LoadStats
from plumbing.cgroupfs import LimitedCgroup
from plumbing.process import pid_alive
from servers.config import ServerConfig
from servers.root import BURN_MS, BURN_SIGNAL
from servers.supervisor import Supervisor
from sources.sampler import Sampler
from values.recording import RecordingWriter
from values.snapshot import SAMPLE_PERIOD_S, Snapshot

from . import cpu_limit
from .autocapture import AutoCapture
from .server import Server, open_server, sampler_for
from .watch import Watch

T = TypeVar("T")

DEFAULT_PERIOD = SAMPLE_PERIOD_S
LIVE_DURATION = 300.0  # a live load runs at most this long unless told otherwise


class Session:
    def __init__(
        self,
        config: ServerConfig,
        level: LoadLevel | None,
        *,
        period: float = DEFAULT_PERIOD,
        record: str | None = None,
        engine: str = "fast",
        stuck_settings: stuck.StuckSettings | None = None,
        cpu_limit: float | None = None,
    ) -> None:
        self.config = config
        self.level = level
        self.period = period
        self.engine = engine
        self.record_path = record
        self.server: Server | None = None  # a Python model or an original (lab.server)
        self.runner: LoadRunner | None = None
        # read, judge, log, record, observe: over each server this session starts in turn
        # stuck workers' stacks, taken off the sampling thread (their episodes outlive it)
        self.autocapture = AutoCapture(stuck_settings or stuck.StuckSettings())
        self.watch = Watch(autocapture=self.autocapture)
        self.paused_pids: set[int] = set()
        self._lock = threading.RLock()
        # one long-lived thread owns every child process (see the module docstring)
        self._owner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serverscope-owner")
        self.cpu_limit = cpu_limit  # cores: the server in a CPU-limited cgroup (lab.cpu_limit)
        self.cgroup: LimitedCgroup | None = None

    # -- running things on the owner thread ---------------------------------------------
    def _on_owner(self, fn: Callable[[], T]) -> T:
        return self.submit(fn).result()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run `fn` on the owner thread (returns at once; for UIs that must not block)."""
        return self._owner.submit(fn)

    def log(self, kind: str, message: str) -> None:
        self.watch.log(kind, message)

    @property
    def supervisor(self) -> Supervisor | None:
        """The Python model's supervisor (its scoreboard, for faults); None for an original."""
        return self.server if isinstance(self.server, Supervisor) else None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._on_owner(self._start)

    def _start(self) -> None:
        with self._lock:
            srv = open_server(self.config)
            srv.start()
            self.server = srv
            self.cgroup = cpu_limit.confine(srv, self.cpu_limit)  # (raises: close() stops srv)
            self.config = srv.config
            # the workers we pause: their stopped state is read from /proc every sample
            self.watch.watch(sampler_for(srv, load=self._load_stats, watch=self.paused_pids))
            self.log("model", f"started {self.describe_model()} on {srv.url}")
            if self.record_path and self.watch.recorder is None:
                meta = {"model": self.config.model, "load": self.level.name if self.level else None}
                self.watch.recorder = RecordingWriter(self.record_path, meta=meta)
            if self.level is not None:
                self._start_load(self.level)

    def _start_load(self, level: LoadLevel) -> None:
        assert self.server is not None
        if self.runner is not None:  # its result is thrown away: no drain to wait for
            self.runner.kill()
            self.runner.stop()
        self.level = level
        self.runner = LoadRunner(self.server.local_url, level, engine=self.engine).start()
        self.log("load", f"load {level.name}: {level.describe()} for {level.duration:g} s")

    def _stop(self) -> None:
        """Stop the load and the server at once: the generator is killed (its drain and
        result would be thrown away with it) while the server stops, so the stop costs
        the server's stop alone (not 2 s of drain, then the server)."""
        with self._lock:
            runner, self.runner = self.runner, None
            if runner is not None:
                runner.kill()
            for pid in list(self.paused_pids):  # never leave a worker stopped behind us
                _signal(pid, signal.SIGCONT)
            self.paused_pids.clear()
            if self.server is not None:
                self.server.stop()
                self.log("model", f"stopped {self.config.model}")
                self.server = None
            cpu_limit.release(self.cgroup)
            self.cgroup = None
            if runner is not None:
                runner.stop()  # reaps it (killed above: returns at once)
            sampler = self.sampler
            self.watch.watch(None)
            if sampler is not None:
                sampler.close()

    def stop(self) -> None:
        self._on_owner(self._stop)

    def interrupt(self) -> None:
        """Send the stop signals now, from the calling thread, without the lock or the
        owner thread: the load generator is killed, paused workers continued, the server
        told to stop. `stop`/`close` then reap them. Quitting calls it first: measured
        under the `overload` load, the owner thread began its stop 0.39 s after the key
        (two busy cores), while the processes could already be dying."""
        runner, server = self.runner, self.server
        if runner is not None:
            runner.kill()
        for pid in list(self.paused_pids):
            _signal(pid, signal.SIGCONT)
        if server is not None:
            server.begin_stop()

    def close(self) -> None:
        """Stop everything and the owner thread; the session cannot be used again. The
        stop signals go out first, from this thread (`interrupt`)."""
        try:
            self.interrupt()
            self.stop()
        finally:
            self._owner.shutdown(wait=True)
            self.watch.close()

    def restart(self, config: ServerConfig | None = None, level: LoadLevel | None = None) -> None:
        """Stop, then start again (with a new model config and/or load, when given)."""

        def go() -> None:
            self._stop()
            if config is not None:
                self.config = config
            if level is not None:
                self.level = level
            self._start()

        self._on_owner(go)

    def set_level(self, level: LoadLevel | None, *, fresh: bool = False) -> None:
        """Change the load. Another load (another preset, or custom after a preset), or
        `fresh`, is a new run: the old clients go and the new ones arrive as the level
        says (`burst`: all at once; changed in place, a burst after `storm` kept 20 of
        the storm's clients and no burst of connects happened). The same load with other
        clients or rate changes in place, within 1 s. A load that had ended starts again."""

        def go() -> None:
            with self._lock:
                if level is None:
                    if self.runner is not None:
                        self.runner.stop()
                        self.runner = None
                        self.log("load", "load stopped")
                    self.level = None
                    return
                same = self.level is not None and level.name == self.level.name
                if self.runner is not None and self.runner.running and same and not fresh:
                    self.runner.set_level(level)
                    self.level = level
                    self.log("load", f"load changed: {level.describe()}")
                elif self.server is not None:
                    self._start_load(level)

        self._on_owner(go)

    def pause_load(self, paused: bool) -> None:
        def go() -> None:
            if self.runner is not None and self.runner.running:
                (self.runner.pause if paused else self.runner.resume)()
                self.log("load", "load paused" if paused else "load resumed")

        self._on_owner(go)

    def __enter__(self) -> Session:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults on one worker -----------------------------------------------------------
    def pause_worker(self, pid: int) -> None:
        """SIGSTOP a worker process (again: SIGCONT). Its connections and queue stall."""
        self._check_worker(pid)
        if pid in self.paused_pids:
            _signal(pid, signal.SIGCONT)
            self.paused_pids.discard(pid)
            self.log("fault", f"resumed pid {pid} (SIGCONT)")
        else:
            _signal(pid, signal.SIGSTOP)
            self.paused_pids.add(pid)
            # a signal stops a whole process: on a thread row, every thread of it stops
            threads = self._thread_slots(pid)
            every = f": all its {threads} threads" if threads > 1 else ""
            self.log("fault", f"paused pid {pid}{every} (SIGSTOP)")

    def kill_worker(self, pid: int) -> None:
        self._check_worker(pid)
        self.paused_pids.discard(pid)
        _signal(pid, signal.SIGKILL)
        self.log("fault", f"killed pid {pid} (SIGKILL)")

    def burn_worker(self, pid: int) -> None:
        """Make a worker process burn CPU for a few seconds (its event loop or accept stalls)."""
        self._check_worker(pid)
        _signal(pid, BURN_SIGNAL)
        self.log("fault", f"pid {pid} burns CPU for {BURN_MS / 1000:g} s")

    def _thread_slots(self, pid: int) -> int:
        """Scoreboard thread slots (workers and listeners) living in process `pid`."""
        sup = self.supervisor
        if sup is None or sup.scoreboard is None:
            return 0
        return sum(1 for s in sup.read().live if s.pid == pid and s.is_thread)

    def _check_worker(self, pid: int) -> None:
        srv = self.server
        if srv is None or pid not in srv.pids():
            raise ValueError(f"pid {pid} is not one of this server's processes")

    # -- sampling -----------------------------------------------------------------------
    def _load_stats(self) -> LoadStats | None:
        runner = self.runner
        return runner.stats() if runner is not None else None

    def sample(self) -> Snapshot | None:
        """One snapshot through the watch (None while no server runs): judged, logged,
        recorded and handed to the observers."""
        with self._lock:
            snap = self.watch.sample()
            if snap is None:
                return None
            for pid in list(self.paused_pids):
                if not pid_alive(pid):
                    self.paused_pids.discard(pid)
            return snap

    # -- descriptions -------------------------------------------------------------------
    def describe_model(self) -> str:
        c = self.config
        knobs = [
            f"{name.replace('_', '-')}={getattr(c, name)}"
            for name in ("workers", "threads_per_child", "max_workers")
            if getattr(c, name) is not None
        ]
        if c.exclusive:
            knobs.append("exclusive")
        knobs += _policies(c)
        return c.model + (f" ({', '.join(knobs)})" if knobs else "")

    # -- what the views read (the watch holds it) ---------------------------------------
    @property
    def sampler(self) -> Sampler | None:
        return self.watch.sampler

    @property
    def events(self) -> collections.deque[LabEvent]:
        return self.watch.events

    @property
    def observers(self) -> list[Callable[[Snapshot], None]]:
        """Handed every snapshot as it is taken (e.g. the Prometheus exporter's update)."""
        return self.watch.observers

    @property
    def last(self) -> Snapshot | None:
        return self.watch.last

    def pids(self) -> list[int]:
        """Every process this session has running: server root, workers, load generator."""
        out: list[int] = []
        server, runner = self.server, self.runner
        if server is not None:
            out += server.pids()
        if runner is not None and runner.pid is not None:
            out.append(runner.pid)
        return out


def _policies(c: ServerConfig) -> list[str]:
    """The balancing policies that are not the model's default, as the flags say them."""
    said = [
        f"{name.replace('_', '-')}={getattr(c, name)}"
        for name, usual in (("accept_policy", "all"), ("steer", "hash"), ("policy", "round-robin"))
        if getattr(c, name) != usual
    ]
    return said + (["incoming-cpu"] if c.incoming_cpu else []) + (["migrate"] if c.migrate else [])


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
