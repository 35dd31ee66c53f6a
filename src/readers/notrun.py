"""Which processes provably have not run since a mark: a process whose fd table, children
and system call cannot have changed need not be read again.

A mark is the process's schedstat (run time, run-queue wait, timeslice count: the main
thread's) read through an fd kept open, then its /proc/PID/stat (num_threads), both
before the caller reads the process. At the next check, a process single-threaded at the
mark whose schedstat is byte-identical was not switched in since: the timeslice count
moves at every switch-in and the run time whenever it leaves a CPU, and starting a thread
(or anything that changes its fd table: open, close, dup, accept, a received SCM_RIGHTS)
needs it to run. A process sharing its fd table without being its thread (clone with
CLONE_FILES and not CLONE_THREAD, which servers do not use) is the one case this cannot
see. An fd opened afresh (the pid gone, maybe reused) never proves anything. Cost: one
pread a check (~1.3 us), and the stat (~4 us) only when it may have run.
"""

from __future__ import annotations

from collections.abc import Iterable

from .procfs import KeptFds


class NotRun:
    """`check(pid)`: whether `pid` has not run since its last `mark`; it also reads what a
    `mark(pid)` right after would keep (so read it before reading the process)."""

    def __init__(self) -> None:
        self._fds = KeptFds()
        self._marks: dict[int, object] = {}
        self._read: dict[int, object] = {}  # this round's reads, for mark()

    def check(self, pid: int) -> bool:
        sched_path = f"/proc/{pid}/schedstat"
        kept = sched_path in self._fds.fds
        sched = self._fds.read(sched_path, 128)
        if kept and sched and self._marks.get(pid) == sched:
            return True
        # it may have run: the caller reads it now, so learn here, before that read, whether
        # a mark may be taken (one thread: nobody but it could change it afterwards)
        self._read[pid] = sched if sched and self._threads(pid) == 1 else None
        return False

    def check_key(self, pid: int, key: tuple[int, bytes] | None) -> bool:
        """`check` with what the caller read itself, before reading the process: (start
        time, schedstat) when the process had one thread at a stat read made since it last
        ran (readers.realtree reads both every sample), None when not known."""
        self._read[pid] = key
        return key is not None and self._marks.get(pid) == key

    def _threads(self, pid: int) -> int | None:
        stat = self._fds.read(f"/proc/{pid}/stat", 1024)
        try:
            return int(stat.rsplit(b")", 1)[1].split()[17])
        except (IndexError, ValueError):
            return None

    def mark(self, pid: int) -> None:
        """Keep what the last `check(pid)` read (read before the caller read the process)."""
        key = self._read.pop(pid, None)
        if key is None:
            self._marks.pop(pid, None)
        else:
            self._marks[pid] = key

    def keep_only(self, pids: Iterable[int]) -> None:
        """Forget the processes not in `pids` (gone from the tree)."""
        keep = set(pids)
        self._fds.keep_only({f"/proc/{p}/" for p in keep})
        self._marks = {p: k for p, k in self._marks.items() if p in keep}
        self._read = {}

    def close(self) -> None:
        self._fds.close()
