"""The sampler: `Sampler.sample()` reads everything once and returns one immutable Snapshot.

Pull-based: the TUI (or `iter_samples`, or the attach CLI) calls it on a timer, by default
every 250 ms. Two sources:
- `SupervisorSource`: a server we started. Worker figures from the shared scoreboard, CPU
  from /proc/PID/stat (per thread from /proc/PID/task/TID/stat for thread workers), the
  accept queues by TCP_INFO on the listening sockets the supervisor holds.
- `AttachSource`: a server we did not start, by PID or listening port. The process tree via
  psutil, CPU per process from /proc, open connections per process from its socket fds and
  /proc/net/tcp{,6}, the queue from /proc/net/tcp{,6} (and its limit from sock_diag, as ss).
  No scoreboard: states are "unknown", accepts and requests None.
Deltas (CPU %, accepts and requests in the interval) are kept per worker identity
(slot, pid/tid, generation), so a respawned worker starts afresh instead of jumping.
Hand-written: no library samples a scoreboard, and psutil is too slow for 250 processes
at 4 Hz (see procfs.py and bench/bench_sampler.py).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import psutil

from loadgen.stats import LoadStats
from plumbing.tcpinfo import accept_queue

from . import analysis, diagnosis, procfs
from .snapshot import (
    KIND_PROCESS,
    KIND_THREAD,
    HostSample,
    KernelCounters,
    ListenerSample,
    ModelInfo,
    Role,
    Snapshot,
    WorkerSample,
)

if TYPE_CHECKING:
    from servers.supervisor import Supervisor

DEFAULT_PERIOD = 0.25  # seconds between samples
DEFAULT_WINDOW_S = analysis.DEFAULT_WINDOW_S
ATTACH_TREE_REFRESH_S = 2.0  # how often an attach source re-reads the process tree


class AttachError(RuntimeError):
    """Nothing to attach to; the message is one line for the user."""


@dataclass(slots=True)
class Reading:
    """What a source read in one go; the sampler turns it into a Snapshot (deltas etc.)."""

    model: ModelInfo  # without the CPU-derived fields
    master_cpu_seconds: float | None
    workers: list[WorkerSample]  # cumulative figures only (cpu_seconds, *_total)
    listeners: list[ListenerSample]


class Deltas:
    """Interval figures per worker identity: the sampler begins a sample with the interval,
    sources call it once per worker with its cumulative figures."""

    __slots__ = ("iv", "next", "prev")

    def __init__(self) -> None:
        self.prev: dict[tuple, tuple[float | None, int | None, int | None]] = {}
        self.next: dict[tuple, tuple[float | None, int | None, int | None]] = {}
        self.iv: float | None = None

    def begin(self, iv: float | None) -> None:
        self.iv = iv
        self.next = {}

    def end(self) -> None:
        self.prev = self.next

    def __call__(
        self,
        key: tuple,
        alive: bool,
        cpu_s: float | None,
        acc: int | None,
        req: int | None,
    ) -> tuple[float | None, int | None, int | None]:
        """(CPU % of one core, accepts, requests) in the interval."""
        self.next[key] = (cpu_s, acc, req)
        p = self.prev.get(key)
        iv = self.iv
        if p is None:
            if iv is not None and alive:  # new since the last sample (respawn, new thread)
                return None, acc, req
            return None, None, None
        pct = None
        if iv and cpu_s is not None and p[0] is not None:
            pct = max(0.0, (cpu_s - p[0]) / iv * 100.0)
        return pct, _delta(acc, p[1]), _delta(req, p[2])


class Source(Protocol):
    kind: str  # "supervisor" or "attach"

    def read(self, now: float, deltas: Deltas) -> Reading: ...


class SupervisorSource:
    """A server started by a `servers.supervisor.Supervisor` (scoreboard + owned sockets)."""

    kind = "supervisor"
    SYN_EVERY_S = 1.0  # SYN_RECV is read every sample while a queue is non-empty, else 1 Hz
    # RSS and thread counts (the full /proc/PID/stat) are read every FULL_STAT_EVERY-th
    # sample (1 Hz at 4 Hz); CPU, from schedstat, every sample
    FULL_STAT_EVERY = 4

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.stat = procfs.StatReader()
        self._n = 0
        self._full: dict[int, procfs.Stat] = {}
        self._syn: dict[int, int] = {}
        self._syn_at = -1e9
        self._names: dict | None = None
        self._addr = []
        for s in sup.listeners:
            name = s.getsockname()
            self._addr.append((name[0], name[1], os.fstat(s.fileno()).st_ino))

    def close(self) -> None:
        self.stat.close()

    def read(self, now: float, deltas: Deltas) -> Reading:
        from servers.scoreboard import ROLE_LISTENER, State

        names = self._names
        if names is None:
            names = self._names = {st: st.name.lower() for st in State}
        sup = self.sup
        if sup.scoreboard is None or sup.proc is None:
            raise RuntimeError("the server is not running")
        board = sup.scoreboard.read()
        root_pid = sup.proc.pid
        self._n += 1
        refresh = self._n % self.FULL_STAT_EVERY == 1
        stats: dict[int, procfs.Stat | None] = {}
        reader = self.stat

        def pstat(pid: int) -> procfs.Stat | None:
            """/proc/PID/stat: read afresh on a refresh sample, else the last reading."""
            if pid not in stats:
                cached = None if refresh else self._full.get(pid)
                stats[pid] = cached if cached is not None else reader.proc(pid)
            return stats[pid]

        def pcpu(pid: int) -> float | None:
            st = pstat(pid)
            if st is None:
                return None
            if st.num_threads == 1:  # the main thread is the whole process
                return reader.cpu_seconds(f"/proc/{pid}/schedstat")
            fresh = st if refresh else reader.proc(pid)
            return fresh.cpu_seconds if fresh else None

        workers = []
        for s in board.slots:
            alive = s.state not in (State.EMPTY, State.DEAD) and s.pid > 0
            cpu = rss = None
            if alive:
                p = pstat(s.pid)
                rss = p.rss_bytes if p else None
                if s.kind == 1:  # KIND_THREAD
                    cpu = reader.cpu_seconds(f"/proc/{s.pid}/task/{s.tid}/schedstat")
                else:
                    cpu = pcpu(s.pid)
            thread = s.kind == 1
            key = (s.index, s.tid if thread else s.pid, s.generation)
            pct, acc, req = deltas(key, alive, cpu, s.accepted, s.requests)
            workers.append(
                WorkerSample(
                    slot=s.index,
                    pid=s.pid,
                    tid=s.tid,
                    generation=s.generation,
                    kind=KIND_THREAD if thread else KIND_PROCESS,
                    state=names[s.state],
                    group=s.group,
                    listener=s.listener,
                    state_age_s=max(0.0, now - s.last_change) if s.last_change else None,
                    age_s=max(0.0, now - s.started) if s.started else None,
                    cpu_percent=pct,
                    cpu_seconds=cpu,
                    rss_bytes=rss,
                    connections=max(0, s.open) if alive else 0,
                    accepts=acc,
                    accepts_total=s.accepted,
                    requests=req,
                    requests_total=s.requests,
                    bytes_sent_total=s.bytes_sent,
                    deaths=s.deaths,
                    role=Role.LISTENER if s.role == ROLE_LISTENER else Role.WORKER,
                )
            )
        # the root's CPU is all its threads' (stat), read every sample: the master's own
        # share is told from the worker threads living in it (goroutines)
        root = stats[root_pid] = reader.proc(root_pid)
        m = board.model
        processes = {w.pid for w in workers if w.state not in ("empty", "dead")} | {root_pid}
        nthreads = sum((st.num_threads if (st := pstat(pid)) else 0) for pid in processes)
        model = ModelInfo(
            name=m.model or sup.config.model,
            root_pid=root_pid,
            master_rss_bytes=root.rss_bytes if root else None,
            gil=m.gil,
            ready=m.ready,
            expected=m.expected,
            spawns=m.spawns,
            deaths=m.deaths,
            dispatches=m.dispatches,
            handoff_failures=m.handoff_failures,
            last_death_pid=m.last_death_pid or None,
            last_death_status=m.last_death_status if m.last_death_pid else None,
            last_death_age_s=(now - m.last_death_time) if m.last_death_pid else None,
            error=m.error,
            processes=len(processes),
            threads=nthreads,
        )
        if refresh:
            self.stat.sweep()  # fds of workers gone since the last refresh
            self._full = {pid: st for pid, st in stats.items() if st is not None}
        queues = [accept_queue(sock) if sock.fileno() >= 0 else None for sock in sup.listeners]
        # SYN_RECV by sock_diag, not /proc/net/tcp (~25 ms to read with 10k TIME_WAITs);
        # half-open connections pile up when accept queues fill, so while any queue is
        # non-empty it is read every sample, otherwise once a second.
        if any(q and q[0] for q in queues) or now - self._syn_at >= self.SYN_EVERY_S:
            syn = procfs.syn_recv_counts()
            self._syn = syn if syn is not None else procfs.read_tcp_table().syn_recv
            self._syn_at = now
        syn = self._syn
        listeners = []
        for i, q in enumerate(queues):
            address, port, inode = self._addr[i]
            queue, limit = q if q is not None else (0, None)
            listeners.append(
                ListenerSample(
                    index=i,
                    port=port,
                    address=address,
                    queue=queue,
                    limit=limit,
                    syn_recv=syn.get(port, 0),
                    source="tcp_info",
                    inode=inode,
                )
            )
        return Reading(model, root.cpu_seconds if root else None, workers, listeners)


class AttachSource:
    """A server we did not start: a PID (and its descendants) or the owner of a port."""

    kind = "attach"

    def __init__(self, *, pid: int | None = None, port: int | None = None) -> None:
        if (pid is None) == (port is None):
            raise ValueError("give exactly one of pid, port")
        self.port = port
        if port is not None:
            pid = self._owner_of(port)
        assert pid is not None
        try:
            self.root = _serverscope_root(psutil.Process(pid))
            self.root_start = self.root.create_time()
        except psutil.NoSuchProcess:
            raise AttachError(f"no process with pid {pid}") from None
        except psutil.AccessDenied:
            raise AttachError(f"not allowed to watch pid {pid} (run as its user)") from None
        self.name = self.root.name()
        self.children: list[int] = []
        self.listen_inodes: set[int] = set()
        self._refreshed = -1e9
        self._limits: dict[int, tuple[int, int]] = {}

    @staticmethod
    def _owner_of(port: int) -> int:
        tcp = procfs.read_tcp_table()
        inodes = {ln.inode for ln in tcp.listen_on(port)}
        if not inodes:
            raise AttachError(f"nothing listens on TCP port {port}")
        owners = procfs.pids_holding(inodes)
        if not owners:
            raise AttachError(
                f"port {port} is listened on, but its process is not visible (another user?)"
            )
        # the root: the owner none of whose ancestors holds the socket; when several
        # siblings hold it (a master that closed its copy), their common parent
        roots = []
        for pid in sorted(owners):
            try:
                parents = {p.pid for p in psutil.Process(pid).parents()}
            except psutil.Error:
                continue
            if not parents & owners:
                roots.append(pid)
        if len(roots) == 1:
            return roots[0]
        try:
            ppids = {psutil.Process(pid).ppid() for pid in roots}
        except psutil.Error:
            ppids = set()
        if len(ppids) == 1 and (ppid := ppids.pop()) > 1:
            return ppid
        return min(roots or owners)

    def _refresh(self, now: float, tcp: procfs.TcpTable) -> None:
        try:
            self.children = [c.pid for c in self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            raise RuntimeError(f"pid {self.root.pid} has exited") from None
        listen = {ln.inode for ln in tcp.listens}
        inodes: set[int] = set()
        for pid in [self.root.pid, *self.children]:
            inodes.update(i for i in procfs.socket_inodes(pid) if i in listen)
        if self.port is not None:
            inodes.update(ln.inode for ln in tcp.listen_on(self.port))
        self.listen_inodes = inodes
        self._limits = procfs.listen_limits()
        self._refreshed = now

    def read(self, now: float, deltas: Deltas) -> Reading:
        tcp = procfs.read_tcp_table(established=True)
        if not self.root.is_running():
            raise RuntimeError(f"pid {self.root.pid} has exited")
        known = {ln.inode for ln in tcp.listens}
        if now - self._refreshed >= ATTACH_TREE_REFRESH_S or not self.listen_inodes <= known:
            self._refresh(now, tcp)
        mine = [ln for ln in tcp.listens if ln.inode in self.listen_inodes]
        ports = {ln.port for ln in mine}
        limits = procfs.listen_limits() if mine else {}
        listeners = [
            ListenerSample(
                index=i,
                port=ln.port,
                address=ln.address,
                queue=ln.queue,
                limit=limits.get(ln.inode, (0, None))[1],
                syn_recv=tcp.syn_recv.get(ln.port, 0),
                source="proc_net_tcp",
                inode=ln.inode,
            )
            for i, ln in enumerate(sorted(mine, key=lambda x: (x.port, x.address, x.inode)))
        ]
        root_pid = self.root.pid
        # a root with children is their master: sampled, but not a worker
        pids = [root_pid, *self.children] if self.children else [root_pid]
        root_stat = procfs.proc_stat(root_pid)
        workers = []
        nthreads = root_stat.num_threads if root_stat else 0
        for pid in pids:
            st = root_stat if pid == root_pid else procfs.proc_stat(pid)
            if st is None:
                continue
            if pid != root_pid:
                nthreads += st.num_threads
            conns = sum(1 for i in procfs.socket_inodes(pid) if tcp.established.get(i, -1) in ports)
            pct, _, _ = deltas((None, pid, st.starttime), True, st.cpu_seconds, None, None)
            workers.append(
                WorkerSample(
                    slot=None,
                    pid=pid,
                    tid=pid,
                    generation=st.starttime,
                    kind=KIND_PROCESS,
                    state="unknown",
                    age_s=None,
                    cpu_percent=pct,
                    cpu_seconds=st.cpu_seconds,
                    rss_bytes=st.rss_bytes,
                    connections=conns,
                    name=_name(pid),
                    role=Role.MASTER if pid == root_pid and self.children else Role.WORKER,
                )
            )
        model = ModelInfo(
            name="attached",
            root_pid=root_pid,
            master_rss_bytes=root_stat.rss_bytes if root_stat else None,
            processes=len({root_pid, *pids}),
            threads=nthreads,
        )
        return Reading(model, root_stat.cpu_seconds if root_stat else None, workers, listeners)


SERVERSCOPE_ROOT_ARGS = ("-m", "servers.root")  # how a serverscope model root is started


def _serverscope_root(proc: psutil.Process) -> psutil.Process:
    """`proc`, or, when `proc` is a serverscope supervisor (`serverscope serve`, the TUI,
    a test), the model root under it: the `python -m servers.root` process, which holds
    the scoreboard and is the root pid `serve` prints. The supervisor keeps copies of the
    listening sockets, so the port's owner is the supervisor, and its children are the
    master and the workers: taking it as the root counted the master as a fifth worker
    of four. Forked workers share the root's command line, so the root is the one whose
    parent does not."""
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return proc
    roots: dict[int, psutil.Process] = {}
    for p in tree:
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if any(cmd[i : i + 2] == list(SERVERSCOPE_ROOT_ARGS) for i in range(len(cmd) - 1)):
            roots[p.pid] = p
    if proc.pid in roots:
        return proc
    for p in roots.values():
        try:
            if p.ppid() not in roots:
                return p
        except psutil.Error:
            continue
    return proc


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Sampler:
    """Call `sample()` on a timer; each call returns one Snapshot.

    `load` is an optional callable returning the load generator's live results (e.g.
    `LoadRunner.stats`); its exceptions are swallowed (client = None).
    """

    def __init__(
        self,
        source: Source,
        *,
        load: Callable[[], LoadStats | None] | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        diagnose: bool = True,
        rules: tuple[diagnosis.Rule, ...] = diagnosis.RULES,
    ) -> None:
        self.source = source
        self.load = load
        self.window_s = window_s
        self.diagnose = diagnose
        self.rules = rules
        self.history: collections.deque[Snapshot] = collections.deque()
        self._seq = 0
        self._prev_time: float | None = None
        self._deltas = Deltas()
        self._prev_master: tuple[int, float] | None = None
        self._prev_host: tuple[float, float] | None = None
        self._prev_kernel: tuple[int, int] | None = None
        self._prev_dispatches: int | None = None
        self._ncpu = procfs.cpu_count()
        self._imbalance = analysis.ImbalanceTracker()
        self._memory = diagnosis.Memory()

    @classmethod
    def for_supervisor(cls, sup: Supervisor, **kw: object) -> Sampler:
        return cls(SupervisorSource(sup), **kw)  # type: ignore[arg-type]

    @classmethod
    def attach(cls, *, pid: int | None = None, port: int | None = None, **kw: object) -> Sampler:
        return cls(AttachSource(pid=pid, port=port), **kw)  # type: ignore[arg-type]

    def sample(self) -> Snapshot:
        t0 = time.thread_time()
        now = time.monotonic()
        wall = time.time()
        iv = None if self._prev_time is None else now - self._prev_time
        self._deltas.begin(iv)
        reading = self.source.read(now, self._deltas)
        self._deltas.end()
        host_busy, host_total = procfs.host_cpu()
        overflows, drops = procfs.netstat_counters()
        workers = reading.workers

        m = reading.model
        master_cpu = None
        if reading.master_cpu_seconds is not None:
            if self._prev_master and self._prev_master[0] == m.root_pid and iv:
                master_cpu = max(
                    0.0, (reading.master_cpu_seconds - self._prev_master[1]) / iv * 100
                )
            self._prev_master = (m.root_pid, reading.master_cpu_seconds)
        disp_delta = _delta(m.dispatches, self._prev_dispatches) if iv is not None else None
        self._prev_dispatches = m.dispatches
        model = dataclasses.replace(m, master_cpu_percent=master_cpu, dispatches_delta=disp_delta)

        host_pct = None
        if self._prev_host is not None:
            db, dt = host_busy - self._prev_host[0], host_total - self._prev_host[1]
            if dt > 0:
                host_pct = max(0.0, db / dt * 100.0 * self._ncpu)
        self._prev_host = (host_busy, host_total)

        od = dd = None
        if self._prev_kernel is not None:
            od, dd = overflows - self._prev_kernel[0], drops - self._prev_kernel[1]
        self._prev_kernel = (overflows, drops)
        kernel = KernelCounters(
            listen_overflows=overflows,
            listen_drops=drops,
            overflows_delta=od,
            drops_delta=dd,
            overflows_per_s=od / iv if od is not None and iv else None,
            drops_per_s=dd / iv if dd is not None and iv else None,
        )

        client = None
        if self.load is not None:
            try:
                client = self.load()
            except Exception:
                client = None

        snap = Snapshot(
            seq=self._seq,
            time=now,
            wall_time=wall,
            interval_s=iv,
            source=self.source.kind,
            model=model,
            workers=tuple(workers),
            listeners=tuple(reading.listeners),
            kernel=kernel,
            host=HostSample(cpu_count=self._ncpu, cpu_percent=host_pct),
            client=client,
            window_s=self.window_s,
        )
        self._seq += 1
        self._prev_time = now
        hist = self.history
        cutoff = now - self.window_s + 1e-6
        hist.append(snap)
        while hist and hist[0].time <= cutoff:
            hist.popleft()
        self._imbalance.add(snap)
        self._imbalance.evict(cutoff)
        snap = dataclasses.replace(snap, imbalance=self._imbalance.result())
        hist[-1] = snap
        if self.diagnose:
            found = self._memory.update(now, diagnosis.diagnose(hist, self.rules))
            snap = dataclasses.replace(snap, diagnoses=tuple(found))
        snap = dataclasses.replace(snap, cost_ms=(time.thread_time() - t0) * 1000.0)
        hist[-1] = snap
        return snap

    def close(self) -> None:
        """Release the /proc file descriptors the source keeps open."""
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def iter_samples(self, period: float = DEFAULT_PERIOD) -> Iterator[Snapshot]:
        """Samples every `period` seconds, forever (the caller stops iterating)."""
        next_at = time.monotonic()
        while True:
            yield self.sample()
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()


def _delta(now: int | None, before: int | None) -> int | None:
    if now is None or before is None:
        return None
    return max(0, now - before)
