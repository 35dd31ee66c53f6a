"""One reading of a real server from outside: the seam the attach sampler will use.

Composes the pieces of issue 14, each with its own module and tests:
- telemetry.sockdiag: the server's listening sockets (queue, limit) and connections,
  filtered in the kernel to its ports, and which pid holds which (incremental);
- telemetry.realtree: roles, state letters and schedstat CPU per process;
- telemetry.accepts_bpf (optional): exact accepts per pid/tid, and queue wait per pid
  (first request bytes' arrival -> accept) where the kernel has the tracepoints; without
  it, new connections per interval from sock_diag, labelled as an estimate, and no queue
  wait (None, with the reason).
It returns plain dataclasses; mapping them onto Snapshot/WorkerSample (and issue 12's
Role on WorkerSample) is left to the integration after the merge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from plumbing.loghist import LogHist

from .accepts_bpf import QUEUE_METHOD, AcceptCounter, BpfUnavailable
from .reading import positional_new
from .realtree import ProcessSample, RealTree, Role, TaskSample
from .sockdiag import SockDiag
from .sockowners import SocketOwners, TcpChangeGate

ACCEPTS_EXACT = "exact (eBPF accept4/accept)"
ACCEPTS_ESTIMATE = "estimate (new connections seen by sock_diag per interval)"


@dataclass(frozen=True, slots=True)
class WorkerReading:
    pid: int
    name: str
    role: Role
    state: str  # /proc letter: R S D T t Z ...
    cpu_ns: int | None
    at: float  # monotonic time of the CPU read
    connections: int  # connections on the server's ports this process holds (as ss -tnp)
    new_connections: int | None  # in the interval (the estimate); None on the first reading
    accepts_total: int | None  # exact, cumulative since the counter started; None without eBPF
    listeners: frozenset[int]  # inodes of listeners it polls (epoll) or else holds
    starttime: int = 0  # clock ticks after boot: with pid, the process's identity
    threads: tuple[TaskSample, ...] = ()  # per thread, when multi-threaded and asked for
    rss_bytes: int | None = None  # resident memory (read with the state, every sample)
    queue: LogHist | None = None  # queue wait, cumulative since attach; None: not measured


_new_worker_reading = positional_new(WorkerReading)
_NO_WAIT = LogHist()  # a worker of the tree that accepted nothing since attach


@dataclass(frozen=True, slots=True)
class ListenerReading:
    inode: int
    address: str
    port: int
    queue: int
    limit: int
    pollers: tuple[int, ...]  # pids whose epoll set has it (reuseport: one worker each)
    drops: int | None = None  # its sk_drops (sock_diag SKMEMINFO); None when not reported


@dataclass(frozen=True, slots=True)
class RealReading:
    time: float
    interval_s: float | None
    workers: tuple[WorkerReading, ...]  # every process of the tree, root first
    listeners: tuple[ListenerReading, ...]
    accepts_source: str  # ACCEPTS_EXACT or ACCEPTS_ESTIMATE
    accepts_unavailable: str | None  # why exact accepts are not counted (None: they are)
    accepts_by_task: dict[tuple[int, int], int] | None = None  # exact, per (pid, tid)
    queue_total: LogHist | None = None  # queue wait of every pid since attach (gone ones too)
    queue_unavailable: str | None = "not asked for"  # why queue wait is not measured


class RealServerReader:
    """Read a real server's tree and sockets; `ports` are its listening ports."""

    def __init__(
        self, root: int, ports: list[int], *, exact_accepts: bool = False, threads: bool = False
    ) -> None:
        self.root = root
        self.ports = ports
        self.diag = SockDiag()
        self.owners = SocketOwners()
        self.tree = RealTree(root, threads=threads)
        self.gate = TcpChangeGate()
        self._cinodes: set[int] = set()
        self._queued = True
        self._lby: dict[int, set[int]] = {}  # pid -> listener inodes it held, last read
        self._cby: dict[int, set[int]] = {}  # pid -> connection inodes it held, last read
        self._dumped_at = -1e18
        self._dump_cpu: dict[int, int | None] = {}  # pid -> CPU ns at the last dump
        self.gate_idle = 0  # dumps skipped because the tree was idle (bench, tests)
        self.counter: AcceptCounter | None = None
        self.unavailable: str | None = "not asked for"
        if exact_accepts:
            try:
                self.counter = AcceptCounter(root, ports=tuple(ports)).start()
                self.unavailable = None
            except BpfUnavailable as e:
                self.unavailable = str(e)
        self.queue_unavailable = self.unavailable
        if self.counter is not None:
            self.queue_unavailable = self.counter.queue_note

    @property
    def queue_method(self) -> str | None:
        """How queue wait is measured, None when it is not (`queue_unavailable` says why)."""
        return QUEUE_METHOD if self.counter and self.counter.measures_queue else None

    def close(self) -> None:
        if self.counter is not None:
            self.counter.stop()
        self.diag.close()
        self.tree.close()

    def __enter__(self) -> RealServerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> RealReading:
        # one pass over the tree; the tree is read BEFORE the connection dump, with the
        # previous sample's socket owners, so that an idle tree can skip the dump
        now = time.monotonic()
        listen = self.diag.listeners(self.ports)
        linodes = {x.inode for x in listen}
        exact = self.counter.per_pid() if self.counter else None
        procs: list[ProcessSample] | None = None
        cpu: dict[int, int | None] = {}
        if not self.tree.tree_reads:  # the first read: owners first, then the tree
            self.tree.refresh()
        else:  # the last read's owners (listeners and connections per pid)
            procs = self.tree.sample(self._lby, self._cby, exact)
            cpu = {p.pid: p.cpu_ns for p in procs}
        pids = [self.root, *self.tree.pids]
        # skip the connection dump (a walk of the kernel's whole established table,
        # TIME-WAIT included: ~2.4 ms at 50k, 9 ms at 127k) when the server's connections
        # cannot have changed since the last one: nothing waited in an accept queue then
        # or now (accepting one gives it an inode without moving any counter), the last
        # dump is under max_age_s old, and either no process of the tree was scheduled
        # since it (accepting or closing a connection takes a syscall; a peer's FIN
        # keeps it connected; only a peer's reset of a connection nobody waits on goes
        # unseen, for at most max_age_s), or no TCP counter of the host moved (the gate)
        queued = any(x.rqueue for x in listen)
        fresh = now - self._dumped_at < self.gate.max_age_s
        idle = bool(cpu) and cpu == self._dump_cpu and None not in cpu.values()
        if not queued and not self._queued and fresh and (idle or self.gate.may_skip(now)):
            self.gate_idle += idle
            cinodes = self._cinodes
        else:
            inodes = self.diag.inodes(self.ports)
            self._queued = 0 in inodes
            cinodes = self._cinodes = {i for i in inodes if i}
            self._dumped_at = now
            self._dump_cpu = cpu
        own = self.owners.update(pids, linodes | cinodes, now=now)
        lby = self._lby = {p: s & linodes for p, s in own.by_pid.items()}
        cby = self._cby = {p: s & cinodes for p, s in own.by_pid.items()}
        if procs is None:
            procs = self.tree.sample(lby, cby, exact)
            self._dump_cpu = {p.pid: p.cpu_ns for p in procs}
        else:
            # a process that holds the listener or a connection for the first time is
            # a worker from this sample on (the tree was sampled with the last owners)
            procs = self.tree.promote(procs, lby, cby, exact)
        waits = total = None
        if self.counter and self.queue_method:
            waits, total = self.counter.queue_per_pid(), self.counter.queue_total()
        new = own.new_by_pid
        workers = []
        polled = self.tree.epoll_listeners
        for p in procs:  # once per process per sample: positional (see reading.positional_new)
            pid = p.pid
            polls = polled.get(pid)
            workers.append(
                _new_worker_reading(
                    pid,
                    p.name,
                    p.role,
                    p.state,
                    p.cpu_ns,
                    p.at,
                    len(cby.get(pid, ())),  # connections
                    None if new is None else new.get(pid, 0),  # new_connections
                    None if exact is None else exact.get(pid, 0),  # accepts_total
                    frozenset(polls if polls else lby.get(pid, ())),  # listeners
                    p.starttime,
                    p.threads,
                    p.rss_bytes,
                    None if waits is None else waits.get(pid, _NO_WAIT),  # queue
                )
            )
        listeners = tuple(
            ListenerReading(
                inode=x.inode,
                address=x.local_address,
                port=x.local_port,
                queue=x.rqueue,
                limit=x.wqueue,
                pollers=tuple(
                    sorted(p for p, s in self.tree.epoll_listeners.items() if x.inode in s)
                ),
                drops=x.drops,
            )
            for x in listen
        )
        return RealReading(
            time=now,
            interval_s=own.interval_s,
            workers=tuple(workers),
            listeners=listeners,
            accepts_source=ACCEPTS_EXACT if self.counter else ACCEPTS_ESTIMATE,
            accepts_unavailable=self.unavailable,
            accepts_by_task=self.counter.totals() if self.counter else None,
            queue_total=total,
            queue_unavailable=self.queue_unavailable,
        )
