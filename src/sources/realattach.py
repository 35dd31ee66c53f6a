"""One reading of a real server from outside, for sources.attach_source.

Composes the readers, each with its own module and tests:
- readers.sockdiag: the server's listening sockets (queue, limit) and connections,
  filtered in the kernel to its ports, and which pid holds which (incremental);
- readers.realtree: roles, state letters and schedstat CPU per process;
- readers.accepts_bpf (optional): exact accepts per pid/tid, and queue wait per pid
  (first request bytes' arrival -> accept) where the kernel has the tracepoints; without
  it, new connections per interval from sock_diag, labelled as an estimate, and no queue
  wait (None, with the reason).
It returns plain dataclasses; sources.attach_source maps them onto Snapshot/WorkerSample.

Each process's connections (`WorkerReading.peers`): from the dumps that read tcp_info
(at most every INFO_EVERY_S), the PEERS_LISTED oldest with their peer, TCP state,
queues and tcp_info, plus the count of all; a process's list is built again only when
its connections or that reading changed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from plumbing.loghist import LogHist
from readers.accepts_bpf import QUEUE_METHOD, AcceptCounter, BpfUnavailable, per_pid
from readers.mechanism import ListenerMechanism, classify, thread_acceptors
from readers.netns import NetNs, net_dir
from readers.peerlist import PeerList
from readers.portquiet import CROSSCHECK_S, QuietGate
from readers.realtree import ProcessSample, RealTree, Role, TaskSample
from readers.sockdiag import DiagSocket, SockDiag
from readers.sockowners import SocketOwners, TcpChangeGate
from readers.sockscan import Endpoint, Scan, scan
from readers.tcpinfo import TcpInfo
from values.current import Peers
from values.positional import positional_new
from values.snapshot import Hold
from values.spread import Spread, Wake

ACCEPTS_EXACT = "exact (eBPF accept4/accept)"
ACCEPTS_ESTIMATE = "estimate (new connections seen by sock_diag per interval)"
CONNECTIONS_DUMP = "sock_diag dump (the last one kept up to 1 s while the tree is idle)"
CONNECTIONS_QUIET = (
    "sock_diag dump, the last one kept while eBPF sees no event on the ports' sockets "
    f"(a dump at least every {CROSSCHECK_S:g} s, compared)"
)
# each connection's tcp_info is asked for while a process holds some (what holds it, and
# its list of connections, are then worth knowing), at most every INFO_EVERY_S (what a
# connection did changes slowly; the starvation rule judges over 1 s), and while the server holds at
# most INFO_MAX_CONNECTIONS: with 1,000 connections it made a dump 1.2-2.1x dearer (the
# kernel fills ~230 bytes a socket, parsed here), +2-5 ms (load 19, noisy)
INFO_EVERY_S = 0.5
# how long a sample waits for bpftrace's counts (answered in 0.6 ms median, 5 ms at most
# of 50, load 6); past it the last ones read stand (a sample late), and the dump is made
FLUSH_WAIT_S = 0.25
INFO_MAX_CONNECTIONS = 1024


@dataclass(frozen=True, slots=True)
class WorkerReading:
    pid: int
    name: str
    role: Role
    state: str  # /proc letter: R S D T t Z ...
    cpu_ns: int | None
    at: float  # monotonic time of the CPU read
    connections: int | None  # connections on the server's ports this process holds (as ss
    # -tnp); None when its fds are not ours to read (another user's process)
    new_connections: int | None  # in the interval (the estimate); None on the first reading
    accepts_total: int | None  # exact, cumulative since the counter started; None without eBPF
    listeners: frozenset[int]  # inodes of listeners it polls (epoll) or else holds
    starttime: int = 0  # clock ticks after boot: with pid, the process's identity
    threads: tuple[TaskSample, ...] = ()  # per thread, when multi-threaded and asked for
    rss_bytes: int | None = None  # resident memory (read with the state, every sample)
    queue: LogHist | None = None  # queue wait, cumulative since attach; None: not measured
    hold: Hold | None = None  # what its connections did (tcp_info), all alike; None: unread
    peers: Peers | None = None  # its connections, the oldest listed; None: not ours to read
    quiet_key: tuple[int, bytes] | None = None  # realtree's (readers.notrun)


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
    syn_recv: int | None = None  # half-open connections to its PORT; None: not dumped yet
    ours: int = 0  # connections of the monitor's own still counted in `queue` (it could
    # not tell which listener of a reuseport group holds them); else taken out of `queue`
    spread: Spread | None = None  # how its connections reach the workers (mechanism)
    wake: Wake | None = None  # how the kernel wakes its waiters; None: nobody seen waiting
    waiters: int | None = None  # processes or threads seen waiting on it
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
    denied: frozenset[int] = frozenset()  # pids whose sockets this user may not read
    own_seen: frozenset[Endpoint] = frozenset()  # the monitor's own peers still connected
    dumped: bool = True  # whether connections were dumped now (else the last dump stands)
    thread_workers: dict[int, frozenset[int]] | None = None  # pid -> its threads that each
    # wait on a listener (threads as workers: HAProxy nbthread); None: none such
    connections_source: str = CONNECTIONS_DUMP  # how the connections were read
    connections_note: str | None = None  # a cross-check that disagreed (readers.portquiet)


class RealServerReader:
    """Read a real server's tree and sockets; `ports` are its listening ports."""

    def __init__(
        self,
        root: int,
        ports: list[int],
        *,
        exact_accepts: bool = False,
        threads: bool = False,
        netns: NetNs | None = None,  # the server's network namespace (None: ours)
    ) -> None:
        self.root = root
        self.ports = ports
        self.diag = SockDiag(netns)
        self.owners = SocketOwners()
        self.tree = RealTree(root, threads=threads)
        self.gate = TcpChangeGate(net_dir=net_dir(netns, root))
        self._cinodes: set[int] = set()
        self._queued = True
        self._lby: dict[int, set[int]] = {}  # pid -> listener inodes it held, last read
        self._cby: dict[int, set[int]] = {}  # pid -> connection inodes it held, last read
        self._dumped_at = -1e18
        self._dump_cpu: dict[int, int | None] = {}  # pid -> CPU ns at the last dump
        self._scan = Scan()  # the last dump's (its half-open counts, tcp_info)
        self._want_info = True  # a process held connections at the last read
        self._info: dict[int, TcpInfo] = {}  # per connection inode, from the last info dump
        self._info_at = -1e18
        self.peers = PeerList()  # each process's connections (readers.peerlist)
        self.gate_idle = 0  # dumps skipped because the tree was idle (bench, tests)
        self.quiet = QuietGate()  # the dumps eBPF says still hold (readers.portquiet)
        self._mech_key: tuple | None = None
        self._mechs: dict[int, ListenerMechanism] = {}
        self._threads_of: dict[int, frozenset[int]] = {}
        self.counter: AcceptCounter | None = None
        self.unavailable: str | None = "not asked for"
        if exact_accepts:
            try:
                ns = None if netns is None or netns.own else netns.inode
                self.counter = AcceptCounter(root, ports=tuple(ports), netns=ns).start()
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

    def read(self, own: Collection[Endpoint] = ()) -> RealReading:
        """`own`: the monitor's own client endpoints (its mod_status requests): their
        connections are neither a process's nor in a queue's length when it can tell."""
        # one function on purpose: the reading's steps in the order the dump-skipping needs
        # one pass over the tree; the tree is read BEFORE the connection dump, with the
        # previous sample's socket owners, so that an idle tree can skip the dump
        now = time.monotonic()
        listen = self.diag.listeners(self.ports)
        linodes = {x.inode for x in listen}
        if self.counter:  # the kernel's counts as of now (else the last ones read stand)
            self.counter.flush(FLUSH_WAIT_S)
        # the counter read once a sample: a flush between two reads made a process's total
        # disagree with its threads' and left that flush out of the process's intervals
        by_task = self.counter.totals() if self.counter else None
        exact = per_pid(by_task) if by_task is not None else None
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
        # unseen, for at most max_age_s), or no TCP counter of the host moved (the gate).
        # Not skipped while a connection of the monitor's own is about (it must be told
        # apart) nor while the last dump saw half-open ones (they come and go unscheduled)
        # Past max_age_s, the last dump stands while eBPF saw no event on the ports'
        # sockets (readers.portquiet), cross-checked every CROSSCHECK_S.
        queued = any(x.rqueue for x in listen)
        fresh = now - self._dumped_at < self.gate.max_age_s
        idle = bool(cpu) and cpu == self._dump_cpu and None not in cpu.values()
        steady = not own and not self._scan.syn_recv and not queued and not self._queued
        changes = self.counter.changes() if self.counter else None
        dumped = not (
            steady
            and ((fresh and (idle or self.gate.may_skip(now))) or self.quiet.may_skip(now, changes))
        )
        if not dumped:
            self.gate_idle += idle
            cinodes = self._cinodes
        else:
            want = (
                self._want_info
                and now - self._info_at >= INFO_EVERY_S
                and len(self._cinodes) <= INFO_MAX_CONNECTIONS
            )
            sc = self._scan = scan(self.diag, self.ports, own=own, info=want)
            if want:
                self._info, self._info_at = sc.info, now
            elif len(self._cinodes) > INFO_MAX_CONNECTIONS:
                self._info = {}  # unknown, not what they did long ago
                self.peers.forget_info()
            self._queued = 0 in sc.inodes
            before, cinodes = self._cinodes, {i for i in sc.inodes if i}
            self._cinodes = cinodes
            self.quiet.dumped(now, changes, before, cinodes, sc.unacked > 0)
            self.peers.dumped(cinodes, now, first=self._dumped_at < 0, scan=sc if want else None)
            self._dumped_at = now
            self._dump_cpu = cpu
            if sc.own_queued:  # the queues again, as near the dump as can be
                listen = self.diag.listeners(self.ports)
        owned = self.owners.update(pids, linodes | cinodes, now=now)
        lby = self._lby = {p: s & linodes for p, s in owned.by_pid.items()}
        cby = self._cby = {p: s & cinodes for p, s in owned.by_pid.items()}
        denied = owned.denied
        if procs is None:
            procs = self.tree.sample(lby, cby, exact)
            self._dump_cpu = {p.pid: p.cpu_ns for p in procs}
            if denied:
                procs = self.tree.promote(procs, lby, cby, exact, denied)
        else:
            # a process that holds the listener or a connection for the first time is
            # a worker from this sample on (the tree was sampled with the last owners)
            procs = self.tree.promote(procs, lby, cby, exact, denied)
        waits = total = None
        if self.counter and self.queue_method:
            waits, total = self.counter.queue_per_pid(), self.counter.queue_total()
        new = owned.new_by_pid
        workers = []
        polled = self.tree.epoll_listeners
        infos = self._info  # (a connection newer than it has no hold until the next)
        holding = 0  # processes holding connections: what holds them, and their list
        for p in procs:  # once per process per sample: positional (see values.positional)
            pid = p.pid
            polls = polled.get(pid)
            held = cby.get(pid, ())
            holding += bool(held)
            workers.append(
                _new_worker_reading(
                    pid,
                    p.name,
                    p.role,
                    p.state,
                    p.cpu_ns,
                    p.at,
                    None if pid in denied else len(held),  # connections
                    None if new is None or pid in denied else new.get(pid, 0),  # new_connections
                    None if exact is None else exact.get(pid, 0),  # accepts_total
                    frozenset(polls if polls else lby.get(pid, ())),  # listeners
                    p.starttime,
                    p.threads,
                    p.rss_bytes,
                    None if waits is None else waits.get(pid, _NO_WAIT),  # queue
                    _hold(held, infos),
                    None if pid in denied else self.peers.of(pid, held),
                    p.quiet_key,
                )
            )
        self.peers.keep(cby.keys())
        self._want_info = holding > 0
        mechs = self._mechanisms(procs, [(x.inode, x.local_port) for x in listen])
        return RealReading(
            time=now,
            interval_s=owned.interval_s,
            workers=tuple(workers),
            listeners=self._listeners(listen, mechs),
            accepts_source=ACCEPTS_EXACT if self.counter else ACCEPTS_ESTIMATE,
            accepts_unavailable=self.unavailable,
            accepts_by_task=by_task,
            queue_total=total,
            queue_unavailable=self.queue_unavailable,
            thread_workers=self._threads_of or None,
            denied=denied,
            own_seen=frozenset(self._scan.own_seen) if dumped else frozenset(own),
            dumped=dumped,
            connections_source=CONNECTIONS_QUIET if changes is not None else CONNECTIONS_DUMP,
            connections_note=self.quiet.note,
        )

    def _mechanisms(
        self, procs: list[ProcessSample], listen: list[tuple[int, int]]
    ) -> dict[int, ListenerMechanism]:
        """How each listener's connections reach the workers (readers.mechanism), made
        again only when the waits were read again or the workers changed."""
        workers = frozenset(p.pid for p in procs if p.role == Role.WORKER)
        key = (self.tree.waits_read, workers, tuple(listen))
        if key != self._mech_key:
            self._mech_key = key
            self._mechs = classify(listen, self.tree.waits, worker_pids=workers)
            self._threads_of = thread_acceptors(self._mechs, self.tree.waits)
        return self._mechs

    def _listeners(
        self, listen: list[DiagSocket], mechs: dict[int, ListenerMechanism]
    ) -> tuple[ListenerReading, ...]:
        """The listening sockets, their queues without the monitor's own connections where
        it can tell whose queue holds them (one listener on the port), the port's
        half-open connections from the last dump, and how each reaches the workers."""
        sc = self._scan
        unknown = ListenerMechanism(None, None, ())
        per_port = Counter(x.local_port for x in listen)
        out = []
        for x in listen:
            ours = sc.own_queued.get(x.local_port, 0)
            m = mechs.get(x.inode, unknown)
            alone = per_port[x.local_port] == 1
            out.append(
                ListenerReading(
                    inode=x.inode,
                    address=x.local_address,
                    port=x.local_port,
                    queue=max(0, x.rqueue - ours) if alone else x.rqueue,
                    limit=x.wqueue,
                    pollers=tuple(
                        sorted(p for p, s in self.tree.epoll_listeners.items() if x.inode in s)
                    ),
                    syn_recv=sc.syn_recv.get(x.local_port, 0) if self._dumped_at > 0 else None,
                    ours=0 if alone else ours,
                    spread=m.spread,
                    wake=m.wake,
                    waiters=m.acceptors(),
                    drops=x.drops,
                )
            )
        return tuple(out)


def _hold(held: set[int] | tuple[()], infos: dict[int, TcpInfo]) -> Hold | None:
    """What the connections a process holds have done, when they all agree; None when it
    holds none, or they differ, or one was not read."""
    if not held:
        return None
    holds = set()
    for inode in held:
        info = infos.get(inode)
        if info is None:
            return None
        holds.add(info.hold)
    return holds.pop() if len(holds) == 1 else None
