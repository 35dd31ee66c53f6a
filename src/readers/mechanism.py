"""How each worker waits for new connections, read from /proc, and the accept mechanism
that makes: the evidence behind every "why" a diagnosis gives (judging.explain).

Per process (`read_waits`, when a worker starts or the listener set changes, never every
sample: ~60 us a process, one readlink per fd plus a short read per epoll fd and thread):
- its epoll sets: /proc/PID/fdinfo/EPFD lists each watched file as `tfd: N events: HEX
  ... ino:HEX`; EPOLLEXCLUSIVE is bit 1 << 28 of `events` (nginx: 10000019; Node/libuv
  and asyncio register without it: 19, 1);
- its socket fds ({fd: inode}, the same pass over /proc/PID/fd);
- per thread, the system call it is blocked in and that call's first argument, the fd,
  from /proc/PID/task/TID/syscall (`288 0x3 ...`: accept4 on fd 3; `232 0x7 ...`:
  epoll_wait on epoll fd 7; `270 0x6 ...`: pselect6 over fds 0-5, gunicorn's sync
  worker). It needs ptrace read access (root, or our own children); without it
  /proc/.../wchan names the kernel function (`inet_csk_accept`, `do_epoll_wait`), no
  fd. A running thread says nothing: read again later.

Per listening socket (`classify`):
- waiters: threads blocked in accept() on it (FIFO: the kernel's wait queue for accept is
  exclusive, first come first woken); else threads in epoll_wait on an epoll set holding
  it (with or without EPOLLEXCLUSIVE); else, no thread seen in it, one waiter per epoll set
  holding it. A process blocked in accept() wins over a registration it does not use:
  Apache's prefork child builds a pollset of its listeners but, with one listener, calls
  accept() directly (seen: accept4 on fd 3, with fd 3 in an epoll set);
- spread: several sockets on one port are a reuseport group; waiters none of which is a
  worker are a master that dispatches (a process) or an acceptor thread (a thread of a
  process whose other threads are the workers); a lone waiting thread that is not the
  main thread of a multi-threaded worker process is a listener thread per process
  (Apache worker/event; a Node worker's waiter is its main thread, its event loop);
  otherwise the workers share the socket and `wake` says how the kernel picks.
`thread_acceptors` tells where threads are the workers: two or more threads of one process
each wait on a listener (HAProxy nbthread: one epoll set per thread, each holding it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from values.spread import Spread, Wake

from .syscalls import RUNNING, read_syscall

EPOLLEXCLUSIVE = 1 << 28

# the calls that wait for a connection, as readers.syscalls names them; select's first
# argument is nfds, not an fd
_KINDS = {
    **{"accept": "accept", "accept4": "accept", "select": "select", "pselect6": "select"},
    **{"epoll_wait": "epoll", "epoll_pwait": "epoll", "epoll_pwait2": "epoll"},
}
_WCHAN = {b"inet_csk_accept": "accept", b"do_epoll_wait": "epoll", b"ep_poll": "epoll"}
OTHER = "other"  # asleep in a call that waits for no connection


@dataclass(frozen=True, slots=True)
class ProcessWaits:
    """What one process's fds and threads show of how it waits (see the module doc)."""

    pid: int
    epolls: dict[int, dict[int, int]]  # epoll fd -> {inode watched: events mask}
    sockets: dict[int, int]  # fd -> socket inode
    calls: dict[int, tuple[str, int | None]]  # tid -> ("accept" | "epoll", fd or None;
    # or "select", nfds: the fds below it may be watched; or OTHER, None: asleep elsewhere)
    threads: int  # threads of the process when read


@dataclass(frozen=True, slots=True)
class Waiter:
    pid: int
    tid: int | None  # None: an epoll set of the process holds it, no thread seen waiting
    wake: Wake


@dataclass(frozen=True, slots=True)
class ListenerMechanism:
    spread: Spread | None  # None: nobody seen waiting (all busy when read, or unreadable)
    wake: Wake | None
    waiters: tuple[Waiter, ...]
    holders: int = 0  # worker processes holding it (one still booting waits nowhere yet)

    def acceptors(self) -> int | None:
        """Processes or threads that take from it: those seen waiting, and at least every
        worker process that holds it (a gunicorn worker still importing its app holds the
        socket and waits in no call yet: counting the waiters alone read 'one acceptor'
        for 2.5 s of a 2-worker start). None when nobody was seen waiting."""
        if not self.waiters:
            return None
        return max(len(self.waiters), self.holders)


UNKNOWN = ListenerMechanism(None, None, ())


def epoll_targets(pid: int, sockets: dict[int, int] | None = None) -> dict[int, dict[int, int]]:
    """{epoll fd: {inode of a file registered in it: its events mask}} for one process;
    `sockets`, when given, is filled from the same pass with {fd: socket inode}."""
    out: dict[int, dict[int, int]] = {}
    base = f"/proc/{pid}/fd/"
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for name in names:
        try:
            link = os.readlink(base + name)
            if link.startswith("socket:["):
                if sockets is not None:
                    sockets[int(name)] = int(link[8:-1])
                continue
            if link != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{name}", "rb") as f:
                info = f.read()
        except OSError:
            continue
        regs: dict[int, int] = {}
        for line in info.splitlines():
            # tfd:        5 events: 10000019 data:     55ee0bcd0d50  pos:0 ino:81f48 sdev:9
            if line.startswith(b"tfd:"):
                i, e = line.rfind(b" ino:"), line.find(b"events:")
                if i >= 0 and e >= 0:
                    regs[int(line[i + 5 :].split()[0], 16)] = int(line[e + 7 :].split()[0], 16)
        out[int(name)] = regs
    return out


def _call(pid: int, tid: int) -> tuple[str, int | None] | None:
    """The accept/epoll call a thread is blocked in, with its fd when readable."""
    got = read_syscall(pid, tid)
    if got is not None:
        kind = _KINDS.get(got[0])
        if kind is None:  # asleep in another call (a client's read): OTHER; running: None
            return (OTHER, None) if got[0] != RUNNING else None
        return (kind, got[1][0]) if got[1] else None
    try:  # no ptrace access (or an unknown architecture): the kernel function, no fd
        with open(f"/proc/{pid}/task/{tid}/wchan", "rb") as f:
            name = _WCHAN.get(f.read().strip())
    except OSError:
        return None
    return (name, None) if name else None


def read_waits(pid: int) -> ProcessWaits | None:
    """One process's evidence; None when it has gone."""
    sockets: dict[int, int] = {}
    epolls = epoll_targets(pid, sockets)
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return None
    calls = {}
    for tid in tids:
        c = _call(pid, tid)
        if c is not None:
            calls[tid] = c
    return ProcessWaits(pid, epolls, sockets, calls, len(tids))


def waiters_of(inode: int, procs: Iterable[ProcessWaits]) -> list[Waiter]:
    out: list[Waiter] = []
    for p in procs:
        fds = {fd for fd, i in p.sockets.items() if i == inode}
        listeners = len(set(p.sockets.values()))
        blocked = [
            tid
            for tid, (call, fd) in p.calls.items()
            if call == "accept" and (fd in fds if fd is not None else bool(fds) and listeners == 1)
        ]
        if blocked:
            out.extend(Waiter(p.pid, tid, Wake.BLOCKING) for tid in sorted(blocked))
            continue
        # select() with nfds above the listener's fd (gunicorn's sync worker); a master
        # sleeping in select(0, ...) with a copy of the listener (Apache's) watches nothing
        selecting = [
            tid
            for tid, (call, n) in p.calls.items()
            if call == "select" and fds and n is not None and n > min(fds)
        ]
        if selecting:
            out.extend(Waiter(p.pid, tid, Wake.SELECT) for tid in sorted(selecting))
            continue
        sets = {ep: regs[inode] for ep, regs in p.epolls.items() if inode in regs}
        seen = False
        for tid, (call, fd) in sorted(p.calls.items()):
            if call == "epoll" and fd in sets:
                out.append(Waiter(p.pid, tid, _wake(sets[fd])))
                seen = True
        # a set nobody is seen waiting in stands for its process's wait, unless that
        # process (one thread) sleeps in another call: Apache prefork's pollset is built
        # and not used, its child pinned in a client's read
        elsewhere = p.threads == 1 and any(c == OTHER for c, _ in p.calls.values())
        if not seen and not elsewhere:
            out.extend(Waiter(p.pid, None, _wake(ev)) for _, ev in sorted(sets.items()))
    return out


def _waits_seen(p: ProcessWaits) -> bool:
    """A thread of it was seen in a wait for connections (accept, epoll, select)."""
    return any(c != OTHER for c, _ in p.calls.values())


def _wake(events: int) -> Wake:
    return Wake.EXCLUSIVE if events & EPOLLEXCLUSIVE else Wake.EPOLL


def classify(
    listeners: Sequence[tuple[int, int]],
    procs: Mapping[int, ProcessWaits],
    *,
    worker_pids: Set[int],
    worker_tids: Set[int] | None = None,
    thread_hosts: Set[int] = frozenset(),
) -> dict[int, ListenerMechanism]:
    """{inode: mechanism} for `listeners` ((inode, port) pairs). `worker_pids`: processes
    that serve; `worker_tids`: threads that serve (the lab's thread slots; None when not
    known: attach); `thread_hosts`: the processes those threads live in."""
    per_port: dict[int, int] = {}
    for _, port in listeners:
        per_port[port] = per_port.get(port, 0) + 1
    out = {}
    for inode, port in listeners:
        waiters = waiters_of(inode, procs.values())
        if not waiters:
            out[inode] = UNKNOWN
            continue
        wakes = {w.wake for w in waiters}
        wake = wakes.pop() if len(wakes) == 1 else Wake.MIXED
        holders = sum(
            1 for p in procs.values() if p.pid in worker_pids and inode in p.sockets.values()
        )
        out[inode] = ListenerMechanism(
            _spread(waiters, per_port[port] > 1, procs, worker_pids, worker_tids, thread_hosts),
            wake,
            tuple(waiters),
            holders,
        )
    return out


def _spread(
    waiters: Sequence[Waiter],
    grouped: bool,
    procs: Mapping[int, ProcessWaits],
    worker_pids: Set[int],
    worker_tids: Set[int] | None,
    thread_hosts: Set[int],
) -> Spread:
    if grouped:
        return Spread.REUSEPORT
    serving = [
        w
        for w in waiters
        if w.pid in worker_pids or (w.tid is not None and w.tid in (worker_tids or ()))
    ]
    if not serving:
        if all(w.pid in thread_hosts for w in waiters):
            return Spread.ACCEPTOR_THREAD
        return Spread.MASTER
    if worker_tids is None:  # attach: a listener thread per process (Apache worker/event)
        pids = [w.pid for w in waiters]
        if len(set(pids)) == len(pids) and all(
            w.tid is not None and w.tid != w.pid and procs[w.pid].threads > 2 for w in waiters
        ):
            return Spread.ACCEPTOR_THREAD
    return Spread.SHARED


def thread_acceptors(
    mechs: Mapping[int, ListenerMechanism], procs: Mapping[int, ProcessWaits]
) -> dict[int, frozenset[int]]:
    """{pid: its threads that each wait on a listener} where two or more of one process
    do (threads as workers: HAProxy nbthread, Envoy, h2o)."""
    by_pid: dict[int, set[int]] = {}
    for m in mechs.values():
        if m.spread in (Spread.MASTER, Spread.ACCEPTOR_THREAD):
            continue
        for w in m.waiters:
            if w.tid is not None:
                by_pid.setdefault(w.pid, set()).add(w.tid)
    return {pid: frozenset(t) for pid, t in by_pid.items() if len(t) > 1 and pid in procs}


def serving_threads(
    waiting: Mapping[int, frozenset[int]] | None,
    accepts_by_task: Mapping[tuple[int, int], int] | None,
) -> dict[int, frozenset[int]]:
    """{pid: its threads that are workers}, where two or more threads of one process each
    accept and serve: each waits on a listener itself (`thread_acceptors`), or each took
    connections (exact accepts per thread). Judged across those threads, not as one
    process: HAProxy with `nbthread 2` took 199 / 52 accepts per thread, and as one process
    it read n = 1, Jain 1.00."""
    out = dict(waiting or {})
    by_pid: dict[int, set[int]] = {}
    for (pid, tid), n in (accepts_by_task or {}).items():
        if n > 0:
            by_pid.setdefault(pid, set()).add(tid)
    for pid, tids in by_pid.items():
        if len(tids) > 1:
            out[pid] = out.get(pid, frozenset()) | tids
    return out


class WaitWatcher:
    """The lab's own processes, read the same way: `update` reads the processes not read
    before when the set of processes changes (a worker started); while nobody was seen
    waiting on some listener (all busy when read), every RETRY_S it reads again up to
    RETRY_BATCH of those that showed no wait; else it returns the last result. Never every
    sample: a process costs ~0.12 ms, 1,025 of them 126 ms of CPU once at start
    (bench/bench_mechanism.py)."""

    RETRY_S = 2.0
    RETRY_BATCH = 64

    def __init__(self) -> None:
        self._waits: dict[int, ProcessWaits] = {}
        self._key: object = None
        self._at = -1e18
        self._mechs: dict[int, ListenerMechanism] = {}
        self._turn = 0
        self.reads = 0  # processes read, in all (bench, tests)

    def due(self, now: float, key: object) -> bool:
        """Whether `update` would read anything now."""
        if key != self._key:
            return True
        unknown = not self._mechs or any(m.spread is None for m in self._mechs.values())
        return unknown and now - self._at >= self.RETRY_S

    def update(
        self,
        now: float,
        key: object,
        pids: Iterable[int],
        listeners: Sequence[tuple[int, int]],
        worker_pids: Set[int],
        worker_tids: Set[int],
        thread_hosts: Set[int],
    ) -> dict[int, ListenerMechanism]:
        if not self.due(now, key):
            return self._mechs
        retry = key == self._key
        self._key, self._at = key, now
        pids = set(pids)
        waits = {p: w for p, w in self._waits.items() if p in pids}
        todo = sorted(pids - waits.keys())
        if retry:  # a batch of those that showed no wait, in turn
            idle = sorted(p for p, w in waits.items() if not _waits_seen(w))
            start = self._turn % max(1, len(idle))
            todo += (idle[start:] + idle[:start])[: self.RETRY_BATCH]
            self._turn += self.RETRY_BATCH
        for pid in todo:
            self.reads += 1
            if (w := read_waits(pid)) is not None:
                waits[pid] = w
            else:
                waits.pop(pid, None)
        self._waits = waits
        self._mechs = classify(
            listeners,
            waits,
            worker_pids=worker_pids,
            worker_tids=worker_tids,
            thread_hosts=thread_hosts,
        )
        return self._mechs
