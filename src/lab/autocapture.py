"""Automatic stack captures of stuck workers, off the sampling thread.

    auto = AutoCapture(StuckSettings(stuck_after=2.0, capture_budget=30))
    snap = auto.step(snap)     # once per snapshot, after the analyser: returns it with the
                               # captures that came back since (`stuck`) and the grouped
                               # diagnosis; schedules the newly stuck workers' captures
    auto.close()               # waits for the captures under way (each bounded)

Who is stuck and who gets a capture is judging.stuck's (pure); the captures run on a
small pool of threads of their own (each one a py-spy/eu-stack child process, or a Node
or Go protocol, bounded by AUTO_TIMEOUT_S), so a sample never waits for one. Their
results come back as immutable values in a later snapshot, which recordings keep.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from judging.stuck import Budget, StuckSettings, StuckWatch
from lab.stacks import worker_stack
from values.snapshot import Snapshot
from values.stackvalues import StackCapture
from values.stuck import Episode, StuckCapture

POOL = 2  # captures at once (two cores: a third would only queue)
QUEUED = 64  # captures waiting for the pool at most (past it, the budget's refusals)

Capturer = Callable[[int, int], StackCapture]


class AutoCapture:
    def __init__(self, settings: StuckSettings, *, capturer: Capturer | None = None) -> None:
        self.settings = settings
        self.watch = StuckWatch(settings.stuck_after)
        self.budget = Budget(settings.capture_budget)
        self._capture: Capturer = capturer or (lambda pid, tid: worker_stack(pid, tid))
        self._native = capturer is None  # a stand-in capturer (tests) is used as given
        self._native_locks: dict[int, threading.Lock] = {}  # one native read per process
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[StuckCapture]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.episodes = 0  # stuck episodes seen
        self.taken = 0  # captures started

    def step(self, snap: Snapshot) -> Snapshot:
        """`snap` with the captures finished since the last step, the grouped diagnosis,
        and the newly stuck workers' captures scheduled. Never blocks on a capture."""
        if not self.settings.on:
            return snap
        done = self._collect()
        if done:
            snap = dataclasses.replace(snap, stuck=snap.stuck + done)
        new = self.watch.step(snap)
        self.watch.captured(snap.stuck)
        self.episodes += len(new)
        # a thread worker of a CPython with the GIL: only native frames tell a thread that
        # waits for the GIL from one that runs (py-spy shows both in the same Python line)
        gil = snap.model is not None and snap.model.gil is True
        for e in new:
            if len(self._pending) < QUEUED and self.budget.take(e.key, snap.time):
                self._submit(e, native=gil and e.tid != e.pid)
        found = self.watch.diagnosis()
        if found is not None and all(d.rule != found.rule for d in snap.diagnoses):
            snap = dataclasses.replace(snap, diagnoses=(*snap.diagnoses, found))
        return snap

    def _submit(self, e: Episode, *, native: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(POOL, thread_name_prefix="serverscope-stack")
            self._pending.append(self._pool.submit(self._take, e, native))
            self.taken += 1

    def _take(self, e: Episode, native: bool) -> StuckCapture:
        began = time.monotonic()
        if native and self._native:
            # a native read ptraces the whole process: two at once on one process, the
            # second is refused by the kernel (EPERM), so one process's are taken in turn
            with self._process_lock(e.pid):
                return StuckCapture(e, began, worker_stack(e.pid, e.tid, native=True))
        return StuckCapture(e, began, self._capture(e.pid, e.tid))

    def _process_lock(self, pid: int) -> threading.Lock:
        with self._lock:
            return self._native_locks.setdefault(pid, threading.Lock())

    def _collect(self) -> tuple[StuckCapture, ...]:
        with self._lock:
            # one look at each future: one finishing between two looks was in neither list
            done = [f for f in self._pending if f.done()]
            self._pending = [f for f in self._pending if f not in done]
        out = []
        for f in done:
            if not f.cancelled() and f.exception() is None:
                out.append(f.result())
        return tuple(sorted(out, key=lambda c: c.time))

    def close(self) -> None:
        """No more captures; cancel the queued ones and wait for those under way (each
        bounded by its timeout, its tool stopped past it)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
