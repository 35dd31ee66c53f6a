"""The source for a server we did not start: by PID (and its descendants) or listening port.

Built on sources.realattach.RealServerReader (netlink sock_diag filtered in the kernel
to the server's ports, socket owners mapped incrementally, /proc state letters and
schedstat CPU, eBPF accepts when allowed), mapped onto Snapshot rows:
- roles: the root of a tree with children is the master, children that ever held the
  listening socket or a connection are workers, the rest helpers (uvicorn's
  resource_tracker); threads of a multi-threaded process are helper rows of Kind.THREAD folded
  under it (sockets belong to processes, so connections stay on the process row), except
  where two or more threads of one process each accept and serve (HAProxy nbthread): those
  threads are the workers, their process a Role.PROCESS row that sums them;
- how connections reach the workers, per listener (ListenerSample.spread/wake/waiters),
  from how each process and thread waits (readers.mechanism);
- CPU % from schedstat nanoseconds over the time between two reads of the SAME task
  (each read timestamped as it is made): /proc/PID/stat ticks made it jump 20 points;
- accepts per worker: exact from eBPF (per pid and tid) when root and the kernel allow,
  else the new connections sock_diag saw per interval, `ModelInfo.accepts_method` says
  which ("exact (eBPF)" / "estimate") and `accepts_note` why;
- queue wait per worker (`WorkerSample.phases.queue`, and the whole server's in
  `Snapshot.phases`), from the same bpftrace (readers.accepts_bpf: first request bytes'
  arrival -> accept(), by tracepoints), cumulative since attach; in-server wait and
  service time cannot be seen from outside and stay None. `ModelInfo.queue_method` names
  the method, or is None with `queue_note` saying why in one line (no eBPF, no
  `sock:sk_data_ready` in the kernel, ...): then there is no phase at all;
- state: sources.attach_states (from /proc and the sockets; Apache's own glyphs from
  mod_status, readers.statuspoll, where fresh), and for a process holding one
  connection what holds it (`WorkerSample.hold`, from the socket's tcp_info);
- what a process serves: its connections as their sockets show them (`WorkerSample.peers`:
  peer, TCP state, queues, tcp_info; the oldest listed, sources.realattach), and under
  Apache with ExtendedStatus its current request and client (`WorkerSample.current`,
  mod_status's rows, fresh as its glyphs are); a thread row has neither (sockets and
  rows are the process's);
- mod_status is read only right after a sample that saw a free worker (or an empty
  accept queue): a request to a saturated server would wait in its queue like the
  clients and add to what is measured; its own connections are told apart by their
  4-tuple and left out of the connections and queues reported;
- what this user may not read (another user's /proc/PID/fd) is unknown, and
  `ModelInfo.access_note` says so with the fix;
- a master holding accepted connections (Node's round robin) dispatches: its new
  connections (or exact accepts) count as `ModelInfo.dispatches`.
What cannot be known stays None (connections of a thread, accepts on the first sample).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter

import psutil

from plumbing.loghist import LogHist
from plumbing.process import raise_nofile_limit
from readers import procfs, realkind
from readers.attach_target import (
    NOT_ALLOWED,
    AttachError,
    check_port_of,
    fds_readable,
    owner_of,
    ports_of,
    serverscope_root,
)
from readers.blockedreader import BlockedReader
from readers.mechanism import serving_threads
from readers.netns import NetNsError, net_dir, of_pid_if_readable, own
from readers.netns import at as netns_at
from readers.placement import PlacementReader
from readers.realtree import Role as TreeRole
from readers.realtree import TaskSample
from readers.statuspoll import OUTSIDE_VIEW, StatusPoller, StatusView
from values.blocked import Blocked
from values.phases import Phases
from values.positional import positional_new
from values.server_info import ModelInfo
from values.snapshot import BUSY_STATES, Kind, ListenerSample, Role, WorkerSample, WorkerState

from . import attach_states
from .reading import Reading, WorkerDeltas
from .realattach import ACCEPTS_EXACT, RealReading, RealServerReader, WorkerReading

__all__ = ["AttachError", "AttachSource"]

EXACT = "exact (eBPF)"
ESTIMATE = "estimate"
# the estimate (new connections seen at samples) misses those that open and close between
# two samples (gunicorn under wrk with Connection: close: 11 seen of ~10,000 taken); its
# note says how many the namespace's listeners took meanwhile, once they took this many
ESTIMATE_MIN_OPENS = 20
_new_worker = positional_new(WorkerSample)
_state = attach_states.process_state  # the name the mapping tests know


class AttachSource:
    """A server we did not start: a PID (and its descendants) or the owner of a port, or
    both (a pid whose ports this user may not read, and its port).

    `exact_accepts`: None tries eBPF when root, True always tries, False never;
    `status_url`: Apache mod_status; "auto" tries /server-status on the first port of an
    Apache; None reads none. Reading it is a request a second to the server, made only
    when a worker is free; its connection is left out of the figures (by 4-tuple), but
    its accept is the server's own (eBPF counts it)."""

    kind = "attach"

    def __init__(
        self,
        *,
        pid: int | None = None,
        port: int | None = None,
        status_url: str | None = None,
        exact_accepts: bool | None = None,
        threads: bool = True,
        netns: str | None = None,
    ) -> None:
        try:  # the namespace named, else the pid's, else ours: its sockets are read there
            ns = netns_at(netns) if netns else of_pid_if_readable(pid) if pid else own()
            if ns is not None:
                ns.run(lambda: None)  # may we enter it? (root)
        except NetNsError as e:
            raise AttachError(str(e)) from None
        both = pid is not None and port is not None
        if pid is None:
            if port is None:
                raise ValueError("give a pid, a port or both")
            pid = owner_of(port, ns)
        assert pid is not None
        try:
            root = serverscope_root(psutil.Process(pid))
        except psutil.NoSuchProcess:
            raise AttachError(f"no process with pid {pid}") from None
        except psutil.AccessDenied:
            raise AttachError(f"not allowed to watch pid {pid} (run as its user)") from None
        self.root = root.pid
        self.name = root.name()
        self.cmd = realkind.cmdline(self.root)
        self.exe = realkind.executable(self.root)  # None when not ours to inspect
        self.comm = realkind.comm(self.root)
        self.program = realkind.program(self.exe, self.comm, self.cmd)
        self.netns = ns  # None: the pid's is not ours to read (another user's process)
        self.net_dir = net_dir(ns, self.root)  # its namespace's counters (the sampler's)
        self.placement = PlacementReader(self.root, ns) if ns is not None else None
        # a tree listening on no port is still watched (CPU, states), with no sockets
        self.ports_hidden = port is None and not fds_readable(self.root)
        if both and port is not None and ns is not None and fds_readable(self.root):
            check_port_of(self.root, port, ns)  # its listener, not another server's
        ports = [port] if port is not None else ports_of(self.root, ns)
        self.ports = ports
        exact = os.geteuid() == 0 if exact_accepts is None else exact_accepts
        # before bpftrace starts: nothing between its start and the guard below
        self._blocked = BlockedReader()  # kept fds: what each worker's main thread waits in
        # up to 4 kept /proc fds a worker (stat, schedstat, cgroup, syscall): 250 workers
        # reach a default soft limit of 1,024, past which reads would turn to unknown
        raise_nofile_limit()
        self.reader = RealServerReader(
            self.root, ports, exact_accepts=exact, threads=threads, netns=ns
        )
        self.not_asked = not exact
        self.status: StatusPoller | None = None
        try:
            if status_url == "auto":  # no request yet: the first sample says if one may go
                if ports and (self.program or "").startswith(("apache2", "httpd")):
                    url = f"http://127.0.0.1:{ports[0]}/server-status"
                    # the server's 127.0.0.1: asked from inside its network namespace
                    foreign = ns if ns is not None and not ns.own else None
                    self.status = StatusPoller(url, auto=True, netns=foreign)
            elif status_url:
                self.status = StatusPoller(status_url)
        except BaseException:  # Ctrl-C in start-up too: bpftrace is not left running
            self.reader.close()
            raise
        self._cpu: dict[tuple[int, int], tuple[int, float]] = {}
        self._estimated: Counter[tuple[int, int]] = Counter()
        # per process, its last Phases: handed again while its queue wait is the same
        # object (the eBPF counter rebuilds it only when its maps moved), so the analyser's
        # window (judging.analysis.PhaseWindow) sees it unchanged instead of subtracting
        # 250 histograms a sample
        self._phases: dict[tuple[int, int], Phases] = {}
        self._dispatched = 0
        self._opens_from: int | None = None  # the namespace's PassiveOpens when first read
        self._seen = 0  # new connections the estimate saw since then

    def close(self) -> None:
        self.reader.close()
        self._blocked.close()
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
        status = self.status
        try:
            r = self.reader.read(status.endpoints() if status else ())
        except ProcessLookupError:
            raise RuntimeError(f"pid {self.root} has exited") from None
        if status is not None:
            status.forget(r.own_seen, r.dumped)
        listeners = self._listeners(r)
        index = {ln.inode: ln.index for ln in listeners}
        view = status.view() if status else None  # states and their line from one read
        slots = view.states if view else {}
        currents = view.currents if view else {}
        where = self.placement.read([w.pid for w in r.workers]) if self.placement else None
        if where is not None and where.ns_pids:  # mod_status names its namespace's pids
            slots, currents = where.by_host_pid(slots), where.by_host_pid(currents)
        live: set[tuple[int, int]] = set()
        workers: list[WorkerSample] = []
        free = False  # a worker that can take a connection now
        serving = serving_threads(r.thread_workers, r.accepts_by_task)
        for w in r.workers:
            glyphs = slots.get(w.pid, ())
            tids = serving.get(w.pid, frozenset())
            row = self._process(w, r, deltas, index, glyphs, live, bool(tids))
            if w.pid in currents:
                row = dataclasses.replace(row, current=currents[w.pid])
            workers.append(row)
            if row.role in (Role.WORKER, Role.PROCESS):
                free |= row.state == WorkerState.WAITING or attach_states.any_free(glyphs)
            by_tid = attach_states.per_thread(w.pid, w.threads, glyphs) if glyphs else {}
            for t in w.threads if len(w.threads) > 1 else ():
                workers.append(
                    self._thread(w, t, r, deltas, live, t.tid in tids, by_tid.get(t.tid))
                )
        if status is not None:  # a request now would wait in the queue like the clients
            status.allow(free or not any(ln.queue for ln in listeners))
        self._blocked.sweep()
        for key in set(self._cpu) - live:  # gone: a reused pid starts afresh
            del self._cpu[key]
        for key in set(self._estimated) - live:
            del self._estimated[key]
        for key in self._phases.keys() - live:
            del self._phases[key]
        root = r.workers[0]
        threads = sum(max(1, len(w.threads)) for w in r.workers)
        # the estimate's new connections this interval, everyone's (the dispatch count's too)
        new = (
            0
            if r.accepts_source == ACCEPTS_EXACT
            else sum(w.new_connections or 0 for w in r.workers)
        )
        model = ModelInfo(
            name="attached",
            root_pid=self.root,
            master_rss_bytes=root.rss_bytes,
            processes=len(r.workers),
            threads=threads,
            dispatches=self._dispatches(r, new),
            server=self._server(r),
            accepts_method=EXACT if r.accepts_source == ACCEPTS_EXACT else ESTIMATE,
            accepts_note=None if r.accepts_source == ACCEPTS_EXACT else self._why_estimate(r, new),
            queue_method=self.reader.queue_method,
            queue_note=None if r.queue_total is not None else self._why_no_queue(r),
            status=self._status(r, view),
            program=self.program,
            access_note=self._access_note(r),
            placement=where,
            connections_method=r.connections_source,
            connections_note=r.connections_note,
        )
        master_cpu = root.cpu_ns / 1e9 if root.cpu_ns is not None else None
        phases = None if r.queue_total is None else Phases(queue=r.queue_total)
        return Reading(model, master_cpu, workers, listeners, phases)

    def _status(self, r: RealReading, view: StatusView | None) -> str:
        if view is None:
            return OUTSIDE_VIEW
        text = view.text
        ours = sum(ln.ours for ln in r.listeners)
        if ours:
            text += f" ({ours} status connection(s) of ours in an accept queue, counted there)"
        return text

    def _access_note(self, r: RealReading) -> str | None:
        """One line on what this user may not read, and the fix; None when all is read."""
        hidden = []
        if r.denied:
            n = len(r.denied)
            hidden.append(f"the sockets of {n} process{'es' if n > 1 else ''}")
        if self.ports_hidden:
            hidden.append("its listening ports")
        if not hidden:
            return None
        return (
            f"connections and states unknown: {' and '.join(hidden)} cannot be read "
            f"(/proc/PID/fd) by uid {os.geteuid()}: {NOT_ALLOWED}"
        )

    def _why_no_queue(self, r: RealReading) -> str:
        why = "not asked for (--exact-accepts)" if self.not_asked else r.queue_unavailable
        return f"queue wait not measured: eBPF {why}"

    def _estimate_seen(self, new: int) -> str | None:
        """How many of the connections the namespace's listeners took since attach (Tcp
        PassiveOpens: every listener's, a neighbour's too) the estimate saw, when it saw
        fewer; None before ESTIMATE_MIN_OPENS were taken, or when it cannot be read."""
        try:
            opens = procfs.passive_opens(self.net_dir)
        except (OSError, ValueError):
            return None
        if self._opens_from is None:
            self._opens_from = opens
            return None
        self._seen += new
        taken = opens - self._opens_from
        if taken < ESTIMATE_MIN_OPENS or self._seen >= taken:
            return None
        return (
            f"saw {self._seen:,} of the {taken:,} connections its network namespace took "
            "since attach: short ones open and close between samples"
        )

    def _why_estimate(self, r: RealReading, new: int) -> str:
        why = "not asked for (--exact-accepts)" if self.not_asked else r.accepts_unavailable
        seen = self._estimate_seen(new)
        return f"new connections per interval from sock_diag (eBPF {why})" + (
            f"; {seen}" if seen else ""
        )

    def _process(
        self,
        w: WorkerReading,
        r: RealReading,
        deltas: WorkerDeltas,
        index: dict[int, int],
        glyphs: tuple[WorkerState, ...],
        live: set[tuple[int, int]],
        threads_serve: bool = False,
    ) -> WorkerSample:
        key = (w.pid, w.starttime)
        live.add(key)
        state = _state(w.state, w.connections, len(w.threads) or 1, w.hold)
        if state == WorkerState.WAITING and not self.ports and not self.ports_hidden:
            state = WorkerState.UNKNOWN  # asleep, but not for a connection: no port to wait on
        elif state == WorkerState.WAITING and w.role == TreeRole.HELPER:
            state = WorkerState.UNKNOWN  # never held a listener nor a connection: not for one
        mine = attach_states.of_slot(glyphs)
        if state not in (WorkerState.STOPPED, WorkerState.DEAD) and mine is not None:
            state = mine  # Apache's own scoreboard, when fresh
            blocked = self._blocked_of(w, state)
        else:  # from outside: asleep with one connection, but maybe not on its client
            blocked = self._blocked_of(w, state)
            state = attach_states.busy_in(state, blocked)
        if w.accepts_total is not None:  # exact
            _, acc, _ = deltas((None, w.pid, w.starttime), True, None, w.accepts_total, None)
            acc_total: int | None = w.accepts_total
        else:
            acc = w.new_connections
            self._estimated[key] += acc or 0
            acc_total = self._estimated[key] if acc is not None else None
        own = [index[i] for i in w.listeners if i in index]
        # once per process per sample: every field positionally (values.positional.positional_new;
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
            # realtree's roles are snapshot.Role: worker, master, helper; a process whose
            # threads are the workers is their container, not one worker
            Role.PROCESS if threads_serve else w.role,
            w.state,  # proc_state
            self._phases_of(key, w.queue),  # phases
            None,  # window_phases (the analyser's)
            w.hold,
            None,  # current: mod_status's, set by the caller
            w.peers,
            blocked,
        )

    def _phases_of(self, key: tuple[int, int], queue: LogHist | None) -> Phases | None:
        if queue is None:
            self._phases.pop(key, None)
            return None
        last = self._phases.get(key)
        if last is None or last.queue is not queue:
            last = self._phases[key] = Phases(queue=queue)
        return last

    def _blocked_of(self, w: WorkerReading, state: WorkerState) -> Blocked | None:
        """What its main thread waits in, read only for a process the stuck rule may judge
        (holding a connection, in a busy state): readers.blockedreader."""
        if not w.connections or state not in BUSY_STATES:
            return None
        others = [t.tid for t in w.threads if t.tid != w.pid]
        return self._blocked.read(w.pid, others, w.quiet_key)

    def _thread(
        self,
        w: WorkerReading,
        t: TaskSample,
        r: RealReading,
        deltas: WorkerDeltas,
        live: set[tuple[int, int]],
        serves: bool = False,
        glyph: WorkerState | None = None,
    ) -> WorkerSample:
        # negative: the main thread's tid is its process's pid, and the process's CPU (all
        # its threads) kept under the same key read 2,203% for an Apache child at 53%;
        # its accepts likewise (the process's interval was its total less its main thread's)
        key = (-t.tid, t.starttime)
        live.add(key)
        acc = total = None
        if r.accepts_by_task is not None:
            total = r.accepts_by_task.get((w.pid, t.tid), 0)
            _, acc, _ = deltas((None, *key), True, None, total, None)
        return WorkerSample(
            slot=None,
            pid=w.pid,
            tid=t.tid,
            generation=t.starttime,
            kind=Kind.THREAD,
            state=attach_states.thread_row_state(t.state, glyph),
            cpu_percent=self._cpu_percent(key, t.cpu_ns, t.at),
            cpu_seconds=None if t.cpu_ns is None else t.cpu_ns / 1e9,
            connections=None,  # a socket belongs to the process, not to one thread
            accepts=acc,
            accepts_total=total,
            name=t.name,
            role=Role.WORKER if serves else Role.HELPER,
            proc_state=t.state,
        )

    def _dispatches(self, r: RealReading, new: int) -> int | None:
        """Connections the master took and passed on, total since attach; None when the
        root is not a master that dispatches. A master dispatches when it holds the
        listening socket and none of its workers does (Node's round robin): then every
        connection a worker holds came through it. Exact: the master's own accepts (eBPF);
        estimate: the new connections anyone in the tree holds (the master passes a
        handle on within microseconds, so sock_diag seldom sees it holding one): `new`."""
        root = r.workers[0]
        lines = {ln.inode for ln in r.listeners}
        if root.role != TreeRole.MASTER or not root.listeners & lines:
            return None
        if any(w.listeners & lines for w in r.workers[1:]):
            return None
        if root.accepts_total is not None:
            return root.accepts_total
        self._dispatched += new
        return self._dispatched

    def _server(self, r: RealReading) -> str | None:
        kids = [w for w in r.workers[1:] if w.role == TreeRole.WORKER]
        per_port = Counter(ln.port for ln in r.listeners)
        lines = {ln.inode for ln in r.listeners}
        return realkind.detect(
            self.cmd,
            exe=self.exe,
            name=self.comm,
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
                syn_recv=ln.syn_recv,  # the port's half-open ones, from the connection dump
                source="sock_diag",
                inode=ln.inode,
                owners=ln.pollers,
                spread=ln.spread,
                wake=ln.wake,
                waiters=ln.waiters,
                drops=ln.drops,
            )
            for i, ln in enumerate(ordered)
        ]


def _age(starttime: int) -> float:
    """Seconds since a process started, from its /proc stat starttime (clock ticks after
    boot: CLOCK_BOOTTIME, which counts suspended time as the kernel's start times do)."""
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - starttime / procfs.CLK_TCK)
