"""A worker watchdog, as gunicorn's arbiter has (`--timeout`): each worker's event loop
beats every quarter of the timeout; the master, on its tick, SIGKILLs a worker whose last
beat is older than the timeout, and the arbiter forks a new one into its slot.

gunicorn's workers fchmod a temporary file and its arbiter reads the file's ctime; here
one shared anonymous page holds a double per slot (CLOCK_MONOTONIC, the same clock in
every process), so a beat is a store, no system call. gunicorn sends SIGABRT, then
SIGKILL after its graceful timeout; a stopped worker (SIGSTOP) runs no handler, so SIGKILL
at once. What it cannot tell: a worker silent because one request runs longer than the
timeout is killed too (gunicorn's sync workers are, for the same reason).
"""

from __future__ import annotations

import asyncio
import mmap
import os
import signal
import struct
import time
from collections.abc import Callable

BEATS_PER_TIMEOUT = 4
_SLOT = struct.Struct("d")


class Watchdog:
    def __init__(self, timeout: float, slots: int) -> None:
        self.timeout = timeout
        self.page = mmap.mmap(-1, _SLOT.size * max(1, slots))  # MAP_SHARED: kept by fork
        self.killed: list[int] = []  # pids, in order

    @property
    def tick(self) -> float:
        """How often the master looks (its arbiter's tick): a silence is seen within it."""
        return min(1.0, self.timeout / BEATS_PER_TIMEOUT)

    def beat(self, slot: int) -> None:
        _SLOT.pack_into(self.page, _SLOT.size * slot, time.monotonic())

    def last(self, slot: int) -> float:
        return float(_SLOT.unpack_from(self.page, _SLOT.size * slot)[0])

    def on_loop(self, slot: int) -> Callable[[asyncio.AbstractEventLoop], None]:
        """For the worker in `slot`: beat from its event loop (a loop stuck in a call, or a
        process stopped, beats no more)."""

        def start(loop: asyncio.AbstractEventLoop) -> None:
            period = self.timeout / BEATS_PER_TIMEOUT

            def beat() -> None:
                self.beat(slot)
                loop.call_later(period, beat)

            beat()

        return start

    def check(self, pids: dict[int, int]) -> list[int]:
        """SIGKILL each worker (slot -> pid) silent for longer than the timeout; their pids."""
        now = time.monotonic()
        killed = []
        for slot, pid in pids.items():
            if now - self.last(slot) <= self.timeout:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.beat(slot)  # one kill per silence: the new worker beats from here
            killed.append(pid)
        self.killed += killed
        return killed
