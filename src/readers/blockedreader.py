"""What each attached worker's main thread is blocked in (readers.syscalls.blocked), at a
fraction of the cost, every figure still as /proc shows it at this sample.

Two savings, for an agent that reads it for every worker holding a connection (250 at
1 Hz): the main thread's /proc/PID/task/PID/syscall is read through an fd kept open
(pread: 3.6 us against 17.5 us for open/read/close, 2-core test machine), and a process
that provably has not run since it was last read (readers.notrun: single-threaded, its
schedstat byte-identical) is not read again at all: not its system call, nor the link
of that call's fd (a readlink in /proc/PID/fd, the dearest part: ~3 ms of 4.3 a sample at
250 workers, load 6), since neither its registers nor its fd table can have changed. A
process that was on a CPU when read ("running") is read again always (its run time may
not have been folded into schedstat yet); one with several threads, every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from values.blocked import RUNNING, Blocked

from . import syscalls
from .notrun import NotRun
from .procfs import KeptFds


class BlockedReader:
    """`read(pid, others)` -> syscalls.blocked(pid, others); `sweep()` once a sample
    forgets the processes not read in it."""

    def __init__(self) -> None:
        self._fds = KeptFds()
        self._not_run = NotRun()
        self._last: dict[int, Blocked] = {}  # pid -> what it was blocked in when last read
        self.reads = 0  # processes read (tests: one that did not run is not read)

    def read(
        self,
        pid: int,
        others: Sequence[int] | None = None,
        quiet_key: tuple[int, bytes] | Literal[False] | None = False,
    ) -> Blocked | None:
        """`quiet_key`: readers.realtree's for `pid` at this sample (NotRun.check_key),
        else read here."""
        last = self._last.get(pid)
        # before reading it: a mark is taken from this
        if quiet_key is False:
            quiet = self._not_run.check(pid)
        else:
            quiet = self._not_run.check_key(pid, quiet_key)
        call_path = f"/proc/{pid}/task/{pid}/syscall"
        if quiet and last is not None and last.call != RUNNING and not others:
            self._fds.touch(call_path)
            return last
        self.reads += 1
        data = self._fds.read_current(call_path, 256)  # a reused pid: read anew
        got = syscalls.parse_syscall(data) if data else None
        b = None if got is None else syscalls.blocked(pid, others, main=got)
        if b is None:
            self._last.pop(pid, None)
        else:
            self._last[pid] = b
            self._not_run.mark(pid)
        return b

    def sweep(self) -> None:
        """Forget the processes not read since the last sweep (gone, or not asked for)."""
        self._fds.sweep()
        kept = {int(path.split("/")[2]) for path in self._fds.fds}
        self._last = {p: b for p, b in self._last.items() if p in kept}
        self._not_run.keep_only(kept)

    def close(self) -> None:
        self._fds.close()
        self._not_run.close()
        self._last.clear()
