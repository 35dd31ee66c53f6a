"""The source for a server we did not start: by PID (and its descendants) or listening port.

Built on telemetry.realattach.RealServerReader (netlink sock_diag filtered in the kernel
to the server's ports, socket owners mapped incrementally, /proc state letters and
schedstat CPU, eBPF accepts when allowed), mapped onto Snapshot rows:
- roles: the root of a tree with children is the master, children that ever held the
  listening socket or a connection are workers, the rest helpers (uvicorn's
  resource_tracker); threads of a multi-threaded process are rows of Role.THREAD folded
  under it (sockets belong to processes, so connections stay on the process row);
- CPU % from schedstat nanoseconds over the time between two reads of the SAME task
  (each read timestamped as it is made): /proc/PID/stat ticks made it jump 20 points;
- accepts per worker: exact from eBPF (per pid and tid) when root and the kernel allow,
  else the new connections sock_diag saw per interval, `ModelInfo.accepts_method` says
  which ("exact (eBPF)" / "estimate") and `accepts_note` why;
- queue wait per worker (`WorkerSample.phases.queue`, and the whole server's in
  `Snapshot.phases`), from the same bpftrace (telemetry.accepts_bpf: first request bytes'
  arrival -> accept(), by tracepoints), cumulative since attach; in-server wait and
  service time cannot be seen from outside and stay None. `ModelInfo.queue_method` names
  the method, or is None with `queue_note` saying why in one line (no eBPF, no
  `sock:sk_data_ready` in the kernel, ...): then there is no phase at all;
- state, from outside (no scoreboard): /proc T or t -> STOPPED, Z -> DEAD; a
  single-threaded process holding one connection and sleeping is blocked on it (READING:
  waiting for the client's bytes, what a pinned prefork or gunicorn sync worker does),
  running -> WORKING; holding none -> WAITING. A multi-threaded process holding
  connections cannot be judged from outside -> UNKNOWN (its threads do not say which
  holds what). With mod_status (telemetry.modstatus.StatusPoller) Apache's own glyphs win
  where fresh;
- a master holding accepted connections (Node's round robin) dispatches: its new
  connections (or exact accepts) count as `ModelInfo.dispatches`.
What cannot be known stays None (connections of a thread, accepts on the first sample).
"""

from __future__ import annotations

import os
import time
from collections import Counter

import psutil

from . import procfs, realkind
from .modstatus import StatusPoller
from .reading import Reading, WorkerDeltas, positional_new
from .realattach import ACCEPTS_EXACT, RealReading, RealServerReader, WorkerReading
from .realtree import Role as TreeRole
from .realtree import TaskSample
from .snapshot import Kind, ListenerSample, ModelInfo, Phases, Role, WorkerSample, WorkerState
from .sockdiag import SockDiag

EXACT = "exact (eBPF)"
ESTIMATE = "estimate"
OUTSIDE_VIEW = "outside view (/proc states + sockets)"
_new_worker = positional_new(WorkerSample)


class AttachError(RuntimeError):
    """Nothing to attach to; the message is one line for the user."""


def _state(letter: str, conns: int | None, threads: int) -> WorkerState:
    """A process's state from outside (see the module docstring)."""
    if letter in ("T", "t"):
        return WorkerState.STOPPED
    if letter in ("Z", "X"):
        return WorkerState.DEAD
    if not conns:
        return WorkerState.WORKING if letter == "R" else WorkerState.WAITING
    if threads > 1:
        return WorkerState.UNKNOWN
    return WorkerState.WORKING if letter == "R" else WorkerState.READING


def _thread_state(letter: str) -> WorkerState:
    if letter in ("T", "t"):
        return WorkerState.STOPPED
    if letter in ("Z", "X"):
        return WorkerState.DEAD
    return WorkerState.WORKING if letter == "R" else WorkerState.UNKNOWN


class AttachSource:
    """A server we did not start: a PID (and its descendants) or the owner of a port.

    `exact_accepts`: None tries eBPF when root, True always tries, False never;
    `status_url`: Apache mod_status; "auto" probes /server-status on the first port of an
    Apache; None reads none. Reading it is a request a second to the server: it shows as
    a connection and an accept of one worker (the observer effect), so it is opt-in."""

    kind = "attach"

    def __init__(
        self,
        *,
        pid: int | None = None,
        port: int | None = None,
        status_url: str | None = None,
        exact_accepts: bool | None = None,
        threads: bool = True,
    ) -> None:
        if (pid is None) == (port is None):
            raise ValueError("give exactly one of pid, port")
        if port is not None:
            pid = _owner_of(port)
        assert pid is not None
        try:
            root = _serverscope_root(psutil.Process(pid))
        except psutil.NoSuchProcess:
            raise AttachError(f"no process with pid {pid}") from None
        except psutil.AccessDenied:
            raise AttachError(f"not allowed to watch pid {pid} (run as its user)") from None
        self.root = root.pid
        self.name = root.name()
        # a tree listening on no port is still watched (CPU, states), with no sockets
        ports = [port] if port is not None else _ports_of(self.root)
        self.ports = ports
        exact = os.geteuid() == 0 if exact_accepts is None else exact_accepts
        self.reader = RealServerReader(self.root, ports, exact_accepts=exact, threads=threads)
        self.not_asked = not exact
        self.cmd = realkind.cmdline(self.root)
        self.status: StatusPoller | None = None
        if status_url == "auto":
            status_url = None
            if ports and self.cmd and "apache" in self.cmd[0] + self.name:
                status_url = StatusPoller.probe(f"http://127.0.0.1:{ports[0]}/server-status")
        if status_url:
            self.status = StatusPoller(status_url)
        self._cpu: dict[tuple[int, int], tuple[int, float]] = {}
        self._estimated: Counter[tuple[int, int]] = Counter()
        self._dispatched = 0

    def close(self) -> None:
        self.reader.close()
        if self.status is not None:
            self.status.close()

    def _cpu_percent(self, key: tuple[int, int], ns: int | None, at: float) -> float | None:
        """CPU % of one core between this read of the task and its previous one."""
        if ns is None:
            self._cpu.pop(key, None)
            return None
        before = self._cpu.get(key)
        self._cpu[key] = (ns, at)
        if before is None or at <= before[1]:
            return None
        return max(0, ns - before[0]) / (at - before[1]) / 1e7

    def read(self, now: float, deltas: WorkerDeltas) -> Reading:
        try:
            r = self.reader.read()
        except ProcessLookupError:
            raise RuntimeError(f"pid {self.root} has exited") from None
        listeners = self._listeners(r)
        index = {ln.inode: ln.index for ln in listeners}
        glyphs = self.status.states() if self.status else {}
        live: set[tuple[int, int]] = set()
        workers: list[WorkerSample] = []
        for w in r.workers:
            workers.append(self._process(w, r, deltas, index, glyphs, live, now))
            for t in w.threads if len(w.threads) > 1 else ():
                workers.append(self._thread(w, t, r, deltas, live))
        for key in set(self._cpu) - live:  # gone: a reused pid starts afresh
            del self._cpu[key]
        for key in set(self._estimated) - live:
            del self._estimated[key]
        root = r.workers[0]
        threads = sum(max(1, len(w.threads)) for w in r.workers)
        model = ModelInfo(
            name="attached",
            root_pid=self.root,
            master_rss_bytes=root.rss_bytes,
            processes=len(r.workers),
            threads=threads,
            dispatches=self._dispatches(r),
            server=self._server(r),
            accepts_method=EXACT if r.accepts_source == ACCEPTS_EXACT else ESTIMATE,
            accepts_note=None if r.accepts_source == ACCEPTS_EXACT else self._why_estimate(r),
            queue_method=self.reader.queue_method,
            queue_note=None if r.queue_total is not None else self._why_no_queue(r),
            status=self.status.describe() if self.status else OUTSIDE_VIEW,
        )
        master_cpu = root.cpu_ns / 1e9 if root.cpu_ns is not None else None
        phases = None if r.queue_total is None else Phases(queue=r.queue_total)
        return Reading(model, master_cpu, workers, listeners, phases)

    def _why_no_queue(self, r: RealReading) -> str:
        why = "not asked for (--exact-accepts)" if self.not_asked else r.queue_unavailable
        return f"queue wait not measured: eBPF {why}"

    def _why_estimate(self, r: RealReading) -> str:
        why = "not asked for (--exact-accepts)" if self.not_asked else r.accepts_unavailable
        return f"new connections per interval from sock_diag (eBPF {why})"

    def _process(
        self,
        w: WorkerReading,
        r: RealReading,
        deltas: WorkerDeltas,
        index: dict[int, int],
        glyphs: dict[int, WorkerState],
        live: set[tuple[int, int]],
        now: float,
    ) -> WorkerSample:
        key = (w.pid, w.starttime)
        live.add(key)
        state = _state(w.state, w.connections, len(w.threads) or 1)
        if state not in (WorkerState.STOPPED, WorkerState.DEAD) and w.pid in glyphs:
            state = glyphs[w.pid]  # Apache's own scoreboard, when fresh
        if w.accepts_total is not None:  # exact
            _, acc, _ = deltas((None, w.pid, w.starttime), True, None, w.accepts_total, None)
            acc_total: int | None = w.accepts_total
        else:
            acc = w.new_connections
            self._estimated[key] += acc or 0
            acc_total = self._estimated[key] if acc is not None else None
        own = [index[i] for i in w.listeners if i in index]
        # once per process per sample: every field positionally (reading.positional_new;
        # by keyword, WorkerSample's __init__ was ~2.5 ms a sample at 250 processes)
        return _new_worker(
            None,  # slot
            w.pid,
            w.pid,  # tid
            w.starttime,  # generation
            Kind.PROCESS,
            state,
            -1,  # group
            own[0] if len(own) == 1 and len(r.listeners) > 1 else -1,  # listener
            None,  # state_age_s
            _age(w.starttime),  # age_s
            self._cpu_percent(key, w.cpu_ns, w.at),
            None if w.cpu_ns is None else w.cpu_ns / 1e9,  # cpu_seconds
            w.rss_bytes,
            w.connections,
            acc,  # accepts
            acc_total,
            None,  # requests
            None,  # requests_total
            None,  # bytes_sent_total
            0,  # deaths
            w.name,
            w.role,  # realtree's roles are snapshot.Role: worker, master, helper
            w.state,  # proc_state
            None if w.queue is None else Phases(queue=w.queue),  # phases
            None,  # window_phases (the analyser's)
        )

    def _thread(
        self,
        w: WorkerReading,
        t: TaskSample,
        r: RealReading,
        deltas: WorkerDeltas,
        live: set[tuple[int, int]],
    ) -> WorkerSample:
        # negative: the main thread's tid is its process's pid, and the process's CPU (all
        # its threads) kept under the same key read 2,203% for an Apache child at 53%
        key = (-t.tid, t.starttime)
        live.add(key)
        acc = total = None
        if r.accepts_by_task is not None:
            total = r.accepts_by_task.get((w.pid, t.tid), 0)
            _, acc, _ = deltas((None, t.tid, t.starttime), True, None, total, None)
        return WorkerSample(
            slot=None,
            pid=w.pid,
            tid=t.tid,
            generation=t.starttime,
            kind=Kind.THREAD,
            state=_thread_state(t.state),
            cpu_percent=self._cpu_percent(key, t.cpu_ns, t.at),
            cpu_seconds=None if t.cpu_ns is None else t.cpu_ns / 1e9,
            connections=None,  # a socket belongs to the process, not to one thread
            accepts=acc,
            accepts_total=total,
            name=t.name,
            role=Role.THREAD,
            proc_state=t.state,
        )

    def _dispatches(self, r: RealReading) -> int | None:
        """Connections the master took and passed on, total since attach; None when the
        root is not a master that dispatches. A master dispatches when it holds the
        listening socket and none of its workers does (Node's round robin): then every
        connection a worker holds came through it. Exact: the master's own accepts (eBPF);
        estimate: the new connections anyone in the tree holds (the master passes a
        handle on within microseconds, so sock_diag seldom sees it holding one)."""
        root = r.workers[0]
        lines = {ln.inode for ln in r.listeners}
        if root.role != TreeRole.MASTER or not root.listeners & lines:
            return None
        if any(w.listeners & lines for w in r.workers[1:]):
            return None
        if root.accepts_total is not None:
            return root.accepts_total
        self._dispatched += sum(w.new_connections or 0 for w in r.workers)
        return self._dispatched

    def _server(self, r: RealReading) -> str | None:
        kids = [w for w in r.workers[1:] if w.role == TreeRole.WORKER]
        per_port = Counter(ln.port for ln in r.listeners)
        lines = {ln.inode for ln in r.listeners}
        return realkind.detect(
            self.cmd,
            children=len(r.workers) - 1,
            threaded_children=any(len(w.threads) > 1 for w in kids),
            workers_hold_listener=any(w.listeners & lines for w in kids),
            listeners_per_port=max(per_port.values(), default=0),
        )

    @staticmethod
    def _listeners(r: RealReading) -> list[ListenerSample]:
        ordered = sorted(r.listeners, key=lambda x: (x.port, x.address, x.inode))
        return [
            ListenerSample(
                index=i,
                port=ln.port,
                address=ln.address,
                queue=ln.queue,
                limit=ln.limit,
                syn_recv=None,  # not read: sock_diag is asked for the listeners only
                source="sock_diag",
                inode=ln.inode,
                owners=ln.pollers,
                drops=ln.drops,
            )
            for i, ln in enumerate(ordered)
        ]


def _owner_of(port: int) -> int:
    """The root among the processes holding a listening socket on `port`: the owner none
    of whose ancestors holds it; when several siblings hold it (a master that closed its
    copy), their common parent."""
    with SockDiag() as diag:
        inodes = {x.inode for x in diag.listeners([port])}
    if not inodes:
        raise AttachError(f"nothing listens on TCP port {port}")
    owners = procfs.pids_holding(inodes)
    if not owners:
        raise AttachError(
            f"port {port} is listened on, but its process is not visible (another user?)"
        )
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


def _ports_of(root: int) -> list[int]:
    """The TCP ports the tree of `root` listens on."""
    from .realtree import descendants

    mine: set[int] = set()
    for pid in [root, *descendants(root)]:
        mine.update(procfs.socket_inodes(pid))
    with SockDiag() as diag:
        return sorted({x.local_port for x in diag.listeners() if x.inode in mine})


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


def _age(starttime: int) -> float:
    """Seconds since a process started, from its /proc stat starttime (clock ticks after
    boot: CLOCK_BOOTTIME, which counts suspended time as the kernel's start times do)."""
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - starttime / procfs.CLK_TCK)
