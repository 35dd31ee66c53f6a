"""What each attached worker's main thread is blocked in (readers.syscalls.blocked), at a
fraction of the cost, every figure still as /proc shows it at this sample.

Two savings, for an agent that reads it for every worker holding a connection (250 at
1 Hz): the main thread's /proc/PID/task/PID/syscall is read through an fd kept open
(pread: 3.6 us against 17.5 us for open/read/close, 2-core test machine), and it is not
read again at all while the thread has not run since it was last read. Proof of that:
its schedstat (run time, run-queue wait, timeslice count: /proc/PID/schedstat is the
main thread's) is read before its syscall file, and a thread whose schedstat is
byte-identical at the next sample was not switched in since (the timeslice count moves
at every switch-in, the run time whenever it leaves a CPU), so the registers its syscall
file shows are the same. A thread that was on a CPU when read ("running") is read again
always (its run time may not have been folded in yet). The call's fd (is it a socket?)
and the other threads are read every time, as `blocked` does: the fd table is shared
with threads that may have run.
"""

from __future__ import annotations

from collections.abc import Sequence

from values.blocked import RUNNING, Blocked

from . import syscalls
from .procfs import KeptFds

Call = tuple[str, tuple[int, ...]]


class BlockedReader:
    """`read(pid, others)` -> syscalls.blocked(pid, others); `sweep()` once a sample
    closes the fds of the processes not read in it."""

    def __init__(self) -> None:
        self._fds = KeptFds()
        self._main: dict[int, tuple[bytes, Call]] = {}  # pid -> (schedstat, its call)
        self.reads = 0  # syscall files read (tests: a thread that did not run is not read)

    def read(self, pid: int, others: Sequence[int] | None = None) -> Blocked | None:
        got = self._main_call(pid)
        if got is None:
            return None
        return syscalls.blocked(pid, others, main=got)

    def _read(self, path: str, size: int) -> tuple[bytes, bool]:
        """(bytes, read through an fd opened just now); a kept fd that failed (its task
        exited, the pid may be reused) is opened once again."""
        fresh = path not in self._fds.fds
        data = self._fds.read(path, size)
        if not data and not fresh:
            fresh, data = True, self._fds.read(path, size)
        return data, fresh

    def _main_call(self, pid: int) -> Call | None:
        call_path = f"/proc/{pid}/task/{pid}/syscall"
        sched, fresh = self._read(f"/proc/{pid}/schedstat", 128)
        seen = self._main.get(pid)
        unmoved = seen is not None and sched and not fresh and seen[0] == sched
        if unmoved and seen is not None and seen[1][0] != RUNNING and call_path in self._fds.fds:
            self._fds.touch(call_path)
            return seen[1]
        data, _ = self._read(call_path, 256)
        self.reads += 1
        got = syscalls.parse_syscall(data) if data else None
        if got is not None and sched:
            self._main[pid] = (sched, got)
        else:
            self._main.pop(pid, None)
        return got

    def sweep(self) -> None:
        """Forget the processes not read since the last sweep (gone, or not asked for)."""
        self._fds.sweep()
        kept = self._fds.fds
        for pid in [p for p in self._main if f"/proc/{p}/schedstat" not in kept]:
            del self._main[pid]

    def close(self) -> None:
        self._fds.close()
        self._main.clear()
