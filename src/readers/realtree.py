"""The process tree of a real server (one serverscope did not start): who is a worker,
who the master, who a helper, and per process and thread its state and CPU.

Roles, from what the kernel shows:
- worker: a process that holds the listening socket or holds (or accepted) connections
  on the listening port; when the root has no child processes it is the worker itself;
- master: the root of a tree with child processes; it usually holds the listening socket
  too (nginx, Apache, gunicorn and uvicorn all bind before forking) but only supervises;
- helper: a child that never held the listening socket nor a connection on it, e.g.
  multiprocessing's resource_tracker under `uvicorn --workers 2` (counted as a worker, it
  turned a 16/4 split from Jain 0.735 into 0.49).
A child that once held a connection stays a worker (a helper never becomes one by luck).

State and CPU are read every sample, each through an fd kept open (pread):
- state (R running, S sleeping, D disk, T stopped, t traced, Z zombie) from
  /proc/PID/stat: a SIGSTOPped worker reads T, so it can stand out;
- CPU from /proc/PID/schedstat (nanoseconds of run time, the first field) with the
  timestamp taken right at that read: /proc/PID/stat's utime+stime are tick-granular
  (10 ms at HZ=100) and made CPU jump by up to 20 points per 250 ms sample. schedstat is
  per task, so a process's CPU is the sum over its threads (its /task/TID/schedstat).
Hot path: per single-threaded process, schedstat, plus stat (state letter, RSS) only when
the task ran since its last stat read, through fds opened at the tree read; 251
processes cost ~2.8 ms per sample with two preads each (bench), one pread when idle. A
process that starts threads between tree reads is summed over its threads from the next
tree read on (<= TREE_EVERY_S); until then its CPU is its main thread's.
The tree is re-read when a known pid vanishes, when the root's `children` file (one
short read per root thread) lists a new child, and at least every `TREE_EVERY_S` for
deeper descendants; not on a fixed 2 s only (after a gunicorn worker respawn no worker
showed for up to 1.5 s).

Which worker polls which reuseport listener, and how every process waits for connections
(readers.mechanism.read_waits: its epoll sets from /proc/PID/fdinfo, the call each thread
is blocked in): a listening socket's inode in a worker's epoll set means that worker takes
that listener's connections. Read when the set of pids changes, and every EPOLL_RETRY_S
while some listener is in no epoll set of a server that uses epoll (a just-started nginx
worker had not registered its listener yet) or nobody was seen waiting on one (all busy).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

from values.positional import positional_new
from values.snapshot import Role

from .mechanism import ProcessWaits, read_waits, waiters_of
from .procfs import KeptFds, Stat, parse_stat, state_and_rss

TREE_EVERY_S = 2.0
EPOLL_RETRY_S = 0.5  # epoll sets re-read this often while a listener is in none of them
WAITS_RETRY_S = 5.0  # ... and this often while nobody was seen waiting on one (all busy:
# ~0.12 ms a process, so a starved prefork of 250 children costs ~30 ms each time)


STATE_NAMES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk",
    "T": "stopped",
    "t": "traced",
    "Z": "zombie",
    "X": "dead",
    "I": "idle",
}


@dataclass(frozen=True, slots=True)
class TaskSample:
    """One process (tid == pid) or thread at one sample."""

    pid: int
    tid: int
    name: str
    state: str  # one letter, as /proc shows it
    cpu_ns: int | None  # cumulative run time; None when the task vanished mid-read
    at: float  # time.monotonic() right after the CPU read
    starttime: int  # clock ticks after boot: with pid, the task's identity


@dataclass(frozen=True, slots=True)
class ProcessSample:
    pid: int
    ppid: int
    name: str
    role: Role
    state: str
    cpu_ns: int | None  # sum over its threads
    at: float
    starttime: int
    threads: tuple[TaskSample, ...]  # empty unless asked for and multi-threaded
    rss_bytes: int | None = None  # resident memory, from the same stat read as the state
    # (start time, schedstat bytes) read this sample, when one thread was seen by a stat
    # read made since it last ran (readers.notrun's key); None: not known to be one thread
    quiet_key: tuple[int, bytes] | None = None


_new_process_sample = positional_new(ProcessSample)
# a process read: pid, ppid, its threads (multi-threaded only), stat, schedstat key, CPU, at
_Read = tuple[int, int, list[TaskSample], Stat, bytes, int | None, float]


def children_of(pid: int) -> list[int]:
    """Direct children, from /proc/PID/task/*/children (needs CONFIG_PROC_CHILDREN, which
    Debian's kernels have); falls back to a /proc scan of ppids."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    try:
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        return out
    except FileNotFoundError:
        pass
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    if parse_stat(f.read()).ppid == pid:
                        out.append(int(name))
            except (OSError, ValueError):
                continue
    return out


def descendants(root: int) -> list[int]:
    out: list[int] = []
    todo = [root]
    while todo:
        kids = children_of(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


@dataclass(slots=True)
class RealTree:
    """Samples a real server's tree; call `sample()` once per period with what the caller
    knows of the sockets (from readers.sockdiag): per pid the listening-socket inodes it
    holds and the connection inodes it holds."""

    root: int
    threads: bool = False  # per-thread rows for multi-threaded processes
    pids: list[int] = field(default_factory=list)  # descendants of root
    ever_worker: set[int] = field(default_factory=set)
    epoll_listeners: dict[int, set[int]] = field(default_factory=dict)  # pid -> listen inodes
    waits: dict[int, ProcessWaits] = field(default_factory=dict)  # pid -> how it waits
    waits_read: int = 0  # how many times `waits` was read (a new reading to classify)
    tree_reads: int = 0
    _fds: KeptFds = field(default_factory=KeptFds)
    _read_at: float = -1e18
    _root_kids: list[int] = field(default_factory=list)
    _listen_inodes: set[int] = field(default_factory=set)
    # pid -> (stat fd, schedstat fd, parsed stat) of single-threaded processes, per tree read
    _fast: dict[int, tuple[int, int, Stat]] = field(default_factory=dict)
    # pid -> (its schedstat bytes, its stat fields) at its last stat read, per tree read
    _last: dict[int, tuple[bytes, Stat, bool]] = field(default_factory=dict)  # ..., one thread
    # pid -> (its schedstat, its children) when they were read: a process that has not
    # run since cannot have forked, nor started a thread (so its `_fast` entry holds)
    _kids: dict[int, tuple[bytes, list[int]]] = field(default_factory=dict)
    _epoll_at: float = -1e18
    _has_epoll: bool = False
    _unwaited: bool = False  # some listener had nobody seen waiting on it

    def close(self) -> None:
        self._fds.close()

    def _root_children(self) -> list[int]:
        out: list[int] = []
        try:
            tids = os.listdir(f"/proc/{self.root}/task")
        except OSError:
            return out
        for tid in tids:
            data = self._fds.read(f"/proc/{self.root}/task/{tid}/children", 1 << 16)
            out.extend(int(x) for x in data.split())
        return out

    def refresh(
        self, now: float | None = None, *, epolls: bool = False, reuse: bool = False
    ) -> None:
        """Re-read the tree, and the epoll registrations when the set of pids changed (or
        when asked): a live worker's registrations hardly change, and reading them means
        reading every fd link of every process (~5 ms at 250 processes). `reuse`: a
        single-threaded process that has not run since its children were read keeps them
        and its kept stat (250 idle workers: a refresh 10 ms -> ~2 ms, load 6-8)."""
        self.tree_reads += 1
        before = set(self.pids)
        kept = self._walk(reuse)
        self._read_at = time.monotonic() if now is None else now
        self._fds.keep_only({f"/proc/{p}/" for p in [self.root, *self.pids]})
        self._fast = {p: v for p, v in self._fast.items() if p in kept}
        self._last = {}  # every stat read again (state, RSS: reclaimed without running)
        if epolls or set(self.pids) != before or self.tree_reads == 1:
            self.read_epolls()

    def _walk(self, reuse: bool) -> set[int]:
        """Set `pids` (the root's descendants) and `_root_kids`; the pids whose children
        were reused (not run since they were read: schedstat's run count unchanged)."""
        kept: set[int] = set()
        kids_of: dict[int, tuple[bytes, list[int]]] = {}
        out: list[int] = []
        todo = [self.root]
        while todo:
            pid = todo.pop()
            fds = self._fast.get(pid)
            try:  # read before the children: a fork after them moves it
                sched = os.pread(fds[1], 64, 0) if fds and pid != self.root else b""
            except OSError:
                sched = b""
            seen = self._kids.get(pid) if reuse and sched else None
            if seen is not None and seen[0] == sched:
                kids = seen[1]
                kept.add(pid)
            else:
                kids = children_of(pid)
            if sched:
                kids_of[pid] = (sched, kids)
            if pid == self.root:
                self._root_kids = sorted(kids)
            out.extend(kids)
            todo.extend(kids)
        self.pids, self._kids = out, kids_of
        return kept

    def read_epolls(self, now: float | None = None) -> None:
        self.epoll_listeners = {}
        self._epoll_at = time.monotonic() if now is None else now
        self._has_epoll = False
        self.waits = {}
        self.waits_read += 1
        for pid in [self.root, *self.pids]:
            w = read_waits(pid)
            if w is None:
                continue
            self.waits[pid] = w
            self._has_epoll |= bool(w.epolls)
            regs: set[int] = set()
            for inodes in w.epolls.values():
                regs |= inodes.keys()
            if regs & self._listen_inodes:
                self.epoll_listeners[pid] = regs & self._listen_inodes
        self._unwaited = any(not waiters_of(i, self.waits.values()) for i in self._listen_inodes)

    def _epolls_incomplete(self, now: float) -> bool:
        """Some listener is in no epoll set although the server uses epoll: a worker that
        had not registered it yet when they were read (nginx just started); or nobody was
        seen waiting on one (every worker busy when read)."""
        if not self._listen_inodes:
            return False
        if self._unwaited and now - self._epoll_at >= WAITS_RETRY_S:
            return True
        if not self._has_epoll:
            return False
        polled = set().union(*self.epoll_listeners.values()) if self.epoll_listeners else set()
        return not self._listen_inodes <= polled

    def sample(
        self,
        listen_by_pid: dict[int, set[int]] | None = None,
        conns_by_pid: dict[int, set[int]] | None = None,
        accepts_by_pid: dict[int, int] | None = None,
    ) -> list[ProcessSample]:
        """One reading of every process of the tree (root first)."""
        listen_by_pid = listen_by_pid or {}
        conns_by_pid = conns_by_pid or {}
        listen_inodes = set().union(*listen_by_pid.values()) if listen_by_pid else set()
        now = time.monotonic()
        if (
            not self.tree_reads
            or now - self._read_at >= TREE_EVERY_S
            or listen_inodes != self._listen_inodes
        ):
            epolls = listen_inodes != self._listen_inodes
            self._listen_inodes = listen_inodes
            self.refresh(now, epolls=epolls, reuse=True)
        elif sorted(self._root_children()) != self._root_kids:
            self.refresh(now, reuse=True)
        elif now - self._epoll_at >= EPOLL_RETRY_S and self._epolls_incomplete(now):
            self.read_epolls(now)
        out = self._read_all()
        if out is None:  # a pid vanished mid-read: re-read the tree once
            self.refresh()
            out = self._read_all() or []
        for pid in self.pids:
            if listen_by_pid.get(pid) or conns_by_pid.get(pid) or (accepts_by_pid or {}).get(pid):
                self.ever_worker.add(pid)
        samples = []
        has_kids = bool(self.pids)
        new_sample = _new_process_sample
        for pid, ppid, tasks, stat, sched, cpu, at in out:
            comm, state, start, rss = stat.comm, stat.state, stat.starttime, stat.rss_bytes
            if pid == self.root:
                role = Role.MASTER if has_kids else Role.WORKER
            else:
                role = Role.WORKER if pid in self.ever_worker else Role.HELPER
            threads = tuple(tasks) if self.threads and len(tasks) > 1 else ()
            key = (start, sched) if sched else None
            samples.append(
                new_sample(pid, ppid, comm, role, state, cpu, at, start, threads, rss, key)
            )
        return samples

    def promote(
        self,
        samples: list[ProcessSample],
        listen_by_pid: dict[int, set[int]],
        conns_by_pid: dict[int, set[int]],
        accepts_by_pid: dict[int, int] | None = None,
        hidden: frozenset[int] = frozenset(),
    ) -> list[ProcessSample]:
        """`samples` (from `sample()`) with the children that hold a listener or a
        connection, or accepted, for the first time made workers (for good, as `sample`
        does): for a caller that sampled the tree with older socket owners. `hidden`:
        children whose sockets this user may not read: taken for workers (most children
        of a server are; calling them helpers said they hold nothing, which is unknown)."""
        accepts = accepts_by_pid or {}
        new = {
            pid
            for pid in self.pids
            if pid not in self.ever_worker
            and (
                listen_by_pid.get(pid) or conns_by_pid.get(pid) or accepts.get(pid) or pid in hidden
            )
        }
        if not new:
            return samples
        self.ever_worker |= new
        return [replace(p, role=Role.WORKER) if p.pid in new else p for p in samples]

    def _read_all(self) -> list[_Read] | None:
        # one function on purpose (~65 lines): the per-pid loop is the hot path (250 pids
        # at 4 Hz), so the fast case (two preads, bound locals) stays inline, without a
        # call per pid. Per pid: its threads' samples (none when single-threaded: built
        # for nothing, 2-4 us each, 250 a sample), CPU ns and when read
        rd = self._fds.read
        pread = os.pread
        mono = time.monotonic
        fast = self._fast
        last = self._last
        out: list[_Read] = []
        for pid in [self.root, *self.pids]:
            fds = fast.get(pid)
            if fds is None:
                data = rd(f"/proc/{pid}/stat")
                if not data:
                    if pid == self.root:
                        raise ProcessLookupError(f"pid {pid} has exited")
                    return None
                stat = parse_stat(data)
                if stat.num_threads == 1:  # single-threaded: keep its two fds at hand
                    sched_path = f"/proc/{pid}/schedstat"
                    rd(sched_path)
                    fast[pid] = (
                        self._fds.fds[f"/proc/{pid}/stat"],
                        self._fds.fds[sched_path],
                        stat,
                    )
            else:
                # the hot path, no path strings (ppid, name, start time do not change;
                # threads are re-counted at each tree read): schedstat, then the stat line
                # for the state letter and RSS only when the task was scheduled since its
                # last stat read (schedstat's run time and timeslice count moved). A task
                # that has not run cannot have changed state (sleeping -> stopped or
                # exited needs it to run; woken and not yet run shows a sample later) nor
                # grown; stat is read afresh at every tree read (<= TREE_EVERY_S) anyway,
                # which bounds a reclaimed RSS's age as attach_source's 2 s cache did.
                # An idle tree of 250 processes costs one pread each instead of two.
                try:
                    sched = pread(fds[1], 64, 0)
                except OSError:
                    sched = b""
                if not sched:
                    if pid == self.root:
                        raise ProcessLookupError(f"pid {pid} has exited")
                    return None
                at = mono()
                st = fds[2]
                seen = last.get(pid)
                if seen is not None and seen[0] == sched:
                    stat, single = seen[1], seen[2]
                else:
                    try:
                        data = pread(fds[0], 512, 0)
                    except OSError:
                        data = b""
                    if not data:
                        if pid == self.root:
                            raise ProcessLookupError(f"pid {pid} has exited")
                        return None
                    state, rss, nthreads = state_and_rss(data)
                    single = nthreads == 1  # read after schedstat: one thread since then
                    # positionally (dataclasses.replace is several times dearer); its
                    # cpu_seconds stays the tree read's: the CPU comes from schedstat
                    stat = Stat(
                        state, st.cpu_seconds, st.starttime, st.num_threads, rss, st.comm, st.ppid
                    )
                    last[pid] = (sched, stat, single)
                cpu: int | None = int(sched[: sched.index(b" ")])
                out.append((pid, st.ppid, [], stat, sched if single else b"", cpu, at))
                continue
            comm, state, ppid, start = stat.comm, stat.state, stat.ppid, stat.starttime
            nthreads = stat.num_threads
            tasks = []
            if nthreads == 1:
                sched = rd(f"/proc/{pid}/schedstat")
                at = mono()
                cpu = int(sched[: sched.index(b" ")]) if sched else None
            else:
                try:
                    tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
                except OSError:
                    return None
                for tid in sorted(tids):
                    tstat = rd(f"/proc/{pid}/task/{tid}/stat") if self.threads else b""
                    sched = rd(f"/proc/{pid}/task/{tid}/schedstat")
                    at = mono()
                    cpu = int(sched[: sched.index(b" ")]) if sched else None
                    if tstat:
                        ts = parse_stat(tstat)
                        tcomm, tstate, tstart = ts.comm, ts.state, ts.starttime
                    else:
                        tcomm, tstate, tstart = comm, state, start
                    tasks.append(TaskSample(pid, tid, tcomm, tstate, cpu, at, tstart))
                # a thread that vanished mid-read: the process's time is unknown
                known = all(t.cpu_ns is not None for t in tasks)
                cpu = sum(t.cpu_ns or 0 for t in tasks) if known else None
                at = max(t.at for t in tasks)
            out.append((pid, ppid, tasks, stat, b"", cpu, at))
        return out
