"""The source for a server we started: a `servers.supervisor.Supervisor`.

Worker figures from the shared scoreboard; CPU from /proc/PID/schedstat (per thread from
/proc/PID/task/TID/schedstat for thread workers); the accept queues by TCP_INFO on the
listening sockets the supervisor holds, or by sock_diag where it holds none (reuseport
--migrate: sources.owned_listeners). Hand-written: no library samples a scoreboard,
and psutil is too slow for 250 processes at 4 Hz (see procfs.py and bench/bench_sampler.py).

Request phases from each worker slot's phase area (sources.phase_reader): a slot's three
counts are read every sample, its histograms only when a count moved. Each slot's current
request and client (servers.inflight) likewise: its sequence number every sample (one
strided read of them all), its record only when that moved.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from plumbing.tcpinfo import accept_queue, listen_drops
from readers import procfs
from readers.mechanism import UNKNOWN, ListenerMechanism, WaitWatcher
from readers.sockdiag import SYN_RECV, SockDiag
from servers import slots
from servers.slots import State
from values.current import Current, Via, client_text
from values.positional import positional_new
from values.server_info import ModelInfo
from values.snapshot import Kind, ListenerSample, Role, WorkerSample, WorkerState

from .balancing import policy_of, steer_of
from .owned_listeners import OwnedListener, OwnedListeners
from .phase_reader import PhaseReader
from .reading import Reading, WorkerDeltas

if TYPE_CHECKING:
    from servers.slots import ModelArea
    from servers.supervisor import Supervisor

# by value (the scoreboard's raw bytes): a tuple index is much cheaper than an enum call
_STATES = tuple(WorkerState(st.name.lower()) for st in State)
_ROLES = tuple(Role[r.name] for r in slots.Role)
_EMPTY, _DEAD, _THREAD = int(State.EMPTY), int(State.DEAD), int(slots.Kind.THREAD)
_new_worker = positional_new(WorkerSample)
_new_current = positional_new(Current)  # a slot's, each time its record moved
_KPROCESS, _KTHREAD = Kind.PROCESS, Kind.THREAD  # a global is 10x cheaper than Kind.X
_WORKER = int(slots.Role.WORKER)


class SupervisorSource:
    """A server started by a `servers.supervisor.Supervisor` (scoreboard + owned sockets)."""

    kind = "supervisor"
    # SYN_RECV is read every sample while a queue is non-empty or the namespace's listen
    # overflows/drops moved, else every SYN_EVERY_S (see _listeners)
    SYN_EVERY_S = 5.0
    # RSS and thread counts (the full /proc/PID/stat) are read every FULL_STAT_EVERY-th
    # sample (1 Hz at 4 Hz); CPU, from schedstat, every sample
    FULL_STAT_EVERY = 4

    def __init__(self, sup: Supervisor, watch: Collection[int] = ()) -> None:
        self.sup = sup
        # pids whose /proc state is read every sample (the session's paused workers): a
        # stopped worker cannot write its state to the scoreboard, so it is read there
        self.watch = watch
        self.stat = procfs.StatReader()
        self._n = 0
        self._refresh = True  # this sample reads the full stat afresh
        self._stats: dict[int, procfs.Stat | None] = {}  # this sample's
        self._full: dict[int, procfs.Stat] = {}  # the last refresh's
        self._full_cpu: dict[int, float | None] = {}  # schedstat CPU when that was read
        self._syn: dict[int, int] = {}
        self._syn_at = -1e9
        self._phases: PhaseReader | None = None
        self._diag: SockDiag | None = None  # kept open: made on the first SYN_RECV read
        self._drops: tuple[int, int] | None = None  # ListenOverflows, ListenDrops
        self._waits = WaitWatcher()  # how the workers wait on the listeners (mechanism)
        self._mechs: dict[int, ListenerMechanism] = {}
        self._requests: dict[int, tuple[int, Current | None]] = {}  # slot: seq, its reading
        self._seqs: list[int] = []
        self._addr = []  # (address, port, inode) per listener, in index order
        # the workers alone hold their sockets (--migrate): read by sock_diag each sample
        self._owned = OwnedListeners() if sup.config.migrate else None
        self._owned_rows: list[OwnedListener] | None = None
        for s in sup.listeners:
            name = s.getsockname()
            self._addr.append((name[0], name[1], os.fstat(s.fileno()).st_ino))

    def close(self) -> None:
        self.stat.close()
        if self._diag is not None:
            self._diag.close()
            self._diag = None
        if self._owned is not None:
            self._owned.close()

    def read(self, now: float, deltas: WorkerDeltas) -> Reading:
        sup = self.sup
        if sup.scoreboard is None or sup.child is None:
            raise RuntimeError("the server is not running")
        area = sup.scoreboard.read_model()
        root_pid = sup.root_pid
        self._n += 1
        self._refresh = self._n % self.FULL_STAT_EVERY == 1
        self._stats = {}
        phases = None
        if sup.scoreboard.phases_on:
            if self._phases is None:
                self._phases = PhaseReader(sup.scoreboard)
            phases = self._phases
            phases.begin()
        worker = self._worker
        self._seqs = sup.scoreboard.request_seqs()
        workers = [
            worker(i, s, now, deltas, phases) for i, s in enumerate(sup.scoreboard.raw_slots())
        ]
        # the root's CPU is all its threads' (stat), read every sample: the master's own
        # share is told from the worker threads living in it (goroutines)
        root = self._stats[root_pid] = self.stat.proc(root_pid)
        processes = {w.pid for w in workers if w.alive} | {root_pid}
        model = self._model(area, root_pid, root, processes, now)
        if self._refresh:
            self.stat.sweep()  # fds of workers gone since the last refresh
            self._full = {pid: st for pid, st in self._stats.items() if st is not None}
            self._full_cpu = {p: c for p, c in self._full_cpu.items() if p in self._full}
        if self._owned is not None:
            self._read_owned(workers)
        listeners = self._listeners(now, self._mechanisms(now, area, processes, workers))
        return Reading(
            model,
            root.cpu_seconds if root else None,
            self._stopped(workers, listeners),
            listeners,
            phases.total() if phases is not None else None,
        )

    def _mechanisms(
        self, now: float, area: ModelArea, processes: set[int], workers: list[WorkerSample]
    ) -> dict[int, ListenerMechanism]:
        """How the workers wait on each listener, read from /proc (readers.mechanism)
        when the processes change or the model becomes ready, not every sample."""
        key = (frozenset(processes), area.ready, tuple(inode for _, _, inode in self._addr))
        if not self._waits.due(now, key):
            return self._mechs
        live = [w for w in workers if w.alive and w.role == Role.WORKER]
        mechs = self._waits.update(
            now,
            key,
            processes,
            [(inode, port) for _, port, inode in self._addr],
            {w.pid for w in live if w.kind == _KPROCESS},
            {w.tid for w in live if w.kind == _KTHREAD},
            {w.pid for w in live if w.kind == _KTHREAD},
        )
        self._mechs = mechs
        return mechs

    def _stopped(
        self, workers: list[WorkerSample], listeners: list[ListenerSample]
    ) -> list[WorkerSample]:
        """`workers`, those found stopped (/proc state T or t) with state STOPPED: a
        stopped worker's scoreboard state is whatever it wrote before. Read only for the
        pids in `watch` and for workers that used no CPU in the interval while their own
        reuseport queue is non-empty (its clients wait on them): a /proc stat read each,
        not one per worker per sample (1,024 workers)."""
        waiting = {ln.index for ln in listeners if ln.queue > 0} if len(listeners) > 1 else ()
        if not waiting and not self.watch:
            return workers
        letters: dict[int, str | None] = {}
        out = workers
        for i, w in enumerate(workers):
            if not w.alive or not (
                w.pid in self.watch or (w.listener in waiting and not w.cpu_percent)
            ):
                continue
            if w.pid not in letters:
                st = self.stat.proc(w.pid)
                letters[w.pid] = st.state if st is not None else None
            letter = letters[w.pid]
            if letter in ("T", "t"):
                if out is workers:
                    out = list(workers)
                out[i] = dataclasses.replace(w, state=WorkerState.STOPPED, proc_state=letter)
        return out

    # -- workers ------------------------------------------------------------------------
    def _pstat(self, pid: int) -> procfs.Stat | None:
        """/proc/PID/stat: read afresh on a refresh sample, else the last reading."""
        stats = self._stats
        if pid in stats:
            return stats[pid]
        st = None if self._refresh else self._full.get(pid)
        if st is None:
            st = self.stat.proc(pid)
        stats[pid] = st
        return st

    def _process(self, pid: int) -> tuple[procfs.Stat | None, float | None]:
        """(stat, CPU seconds) of a process worker. A single-threaded one's CPU is its
        schedstat, read every sample; its stat (RSS, threads) is the last refresh's, and
        on a refresh sample it is read afresh only if the process ran since that stat
        was read (its schedstat moved): one that has not run cannot have grown nor
        started a thread. At 1,024 idle workers the refresh read 1,024 stat files every
        4th sample (bench/bench_sampler.py)."""
        if pid in self._stats:  # read already this sample (several slots, one process)
            st = self._stats[pid]
            return st, self._process_cpu(pid, st) if st is not None else None
        full = self._full.get(pid)
        sched = f"/proc/{pid}/schedstat"
        cpu = None
        if full is not None and full.num_threads == 1:
            cpu = self.stat.cpu_seconds(sched)
            if cpu is not None and (not self._refresh or cpu == self._full_cpu.get(pid)):
                self.stat.touch(f"/proc/{pid}/stat")  # kept open through the sweep
                self._stats[pid] = full
                return full, cpu
        st = self._stats[pid] = self.stat.proc(pid)
        if st is None:
            return None, None
        if st.num_threads > 1:
            return st, st.cpu_seconds
        if cpu is None:
            cpu = self.stat.cpu_seconds(sched)
        self._full_cpu[pid] = cpu  # read before the stat: if it ran since, the next
        return st, cpu  # refresh sees a change and reads the stat again

    def _process_cpu(self, pid: int, st: procfs.Stat) -> float | None:
        if st.num_threads == 1:  # the main thread is the whole process
            return self.stat.cpu_seconds(f"/proc/{pid}/schedstat")
        fresh = st if self._refresh else self.stat.proc(pid)
        return fresh.cpu_seconds if fresh else None

    def _worker(
        self,
        index: int,
        s: tuple[Any, ...],
        now: float,
        deltas: WorkerDeltas,
        phases: PhaseReader | None,
    ) -> WorkerSample:
        """One slot (a `Scoreboard.raw_slots` tuple). The hot loop, once per slot per
        sample, so WorkerSample is built by `positional_new`, every field in its order
        (4x cheaper than by keyword: bench/README.md, bench_sampler.py)."""
        (pid, tid, st, kind, listener, gen, accepted, nopen, requests, sent, last, started,
         deaths, group, role) = s  # fmt: skip
        alive = st != _EMPTY and st != _DEAD and pid > 0
        thread = kind == _THREAD
        cpu = rss = None
        if alive:
            if thread:
                p = self._pstat(pid)
                cpu = self.stat.cpu_seconds(f"/proc/{pid}/task/{tid}/schedstat")
            else:
                p, cpu = self._process(pid)
            if p is not None:
                rss = p.rss_bytes
        pct, acc, req = deltas((index, tid if thread else pid, gen), alive, cpu, accepted, requests)
        return _new_worker(
            index,  # slot
            pid,
            tid,
            gen,  # generation
            _KTHREAD if thread else _KPROCESS,  # kind
            _STATES[st],
            group,
            listener,
            (now - last if now > last else 0.0) if last else None,  # state_age_s
            (now - started if now > started else 0.0) if started else None,  # age_s
            pct,  # cpu_percent
            cpu,  # cpu_seconds
            rss,  # rss_bytes
            (nopen if nopen > 0 else 0) if alive else 0,  # connections
            acc,  # accepts
            accepted,  # accepts_total
            req,  # requests
            requests,  # requests_total
            sent,  # bytes_sent_total
            deaths,
            "",  # name
            _ROLES[role],
            None,  # proc_state: attach's
            phases.slot(index, gen, now) if phases is not None and role == _WORKER else None,
            None,  # window_phases: the analyser's
            None,  # hold: attach's (the scoreboard's state says K or R)
            self._current(index) if alive else None,
            None,  # peers: attach's
            None,  # blocked: attach's
        )

    def _current(self, index: int) -> Current | None:
        """Slot `index`'s current request and client, read again only when its record's
        sequence number moved (a reading caught mid-write keeps the last one)."""
        seq = self._seqs[index]
        seen = self._requests.get(index)
        if seen is not None and seen[0] == seq:
            return seen[1]
        board = self.sup.scoreboard
        assert board is not None
        r = board.request(index, seq)
        if r is None:  # its worker is writing it: the last reading, read again next time
            return seen[1] if seen is not None else None
        address = r.address.decode("latin-1")
        current = _new_current(
            Via.SCOREBOARD,
            r.requests,
            r.line.decode("latin-1") or None,
            client_text(address, r.port) if address else None,
            r.began or None,
            r.connected or None,
        )
        self._requests[index] = (seq, current)
        return current

    # -- the model ------------------------------------------------------------------------
    def _model(
        self,
        m: ModelArea,
        root_pid: int,
        root: procfs.Stat | None,
        processes: set[int],
        now: float,
    ) -> ModelInfo:
        nthreads = sum((st.num_threads if (st := self._pstat(pid)) else 0) for pid in processes)
        return ModelInfo(
            name=m.model or self.sup.config.model,
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
            policy=policy_of(self.sup.config),
        )

    # -- listeners ------------------------------------------------------------------------
    def _syn_recv(self) -> dict[int, int] | None:
        """{port: half-open connections} on our ports; None without sock_diag. Whatever
        the filter, the kernel walks its whole established table (TIME-WAIT included) for
        this dump, so it is one walk for both families (SockDiag's), on a netlink socket
        kept open: with 84,000 TIME-WAIT on the host, 6.6 ms against 12.9 ms for
        procfs.syn_recv_counts' two walks; at 1 Hz that was 3.2 ms a sample at 4 Hz."""
        ports = sorted({port for _, port, _ in self._addr})
        if not ports:
            return {}
        try:
            if self._diag is None:
                self._diag = SockDiag()
            rows = self._diag.dump(SYN_RECV, ports)
        except OSError:  # SockDiagError, or the netlink socket failing mid-dump
            return None
        out: dict[int, int] = {}
        for r in rows:
            out[r.local_port] = out.get(r.local_port, 0) + 1
        return out

    def _read_owned(self, workers: list[WorkerSample]) -> None:
        """The listeners the workers alone hold, by sock_diag; unknown (none) without it."""
        assert self._owned is not None
        held = [(w.pid, w.listener) for w in workers if w.alive and w.role == Role.WORKER]
        try:
            rows = self._owned.read(self.sup.port, held)
        except OSError:
            rows = None
        self._owned_rows = rows
        self._addr = [(r.sock.local_address, r.sock.local_port, r.sock.inode) for r in rows or ()]

    def _listeners(self, now: float, mechs: dict[int, ListenerMechanism]) -> list[ListenerSample]:
        """One row per listener: those the workers alone hold (--migrate) as sock_diag
        read them, else the sockets we keep, by TCP_INFO on each."""
        if self._owned is not None:
            owned = self._owned_rows or []
            self._refresh_syn(now, queued=any(r.sock.rqueue for r in owned))
            return [
                self._owned_sample(r, mechs.get(r.sock.inode, UNKNOWN), self._syn) for r in owned
            ]
        socks = self.sup.listeners
        queues = [accept_queue(sock) if sock.fileno() >= 0 else None for sock in socks]
        self._refresh_syn(now, queued=any(q and q[0] for q in queues))
        out = []
        for i, (sock, q) in enumerate(zip(socks, queues, strict=True)):
            address, port, inode = self._addr[i]
            queue, limit = q if q is not None else (0, None)
            m = mechs.get(inode, UNKNOWN)
            out.append(
                ListenerSample(
                    index=i,
                    port=port,
                    address=address,
                    queue=queue,
                    limit=limit,
                    syn_recv=self._syn.get(port, 0),
                    source="tcp_info",
                    inode=inode,
                    spread=m.spread,
                    wake=m.wake,
                    waiters=m.acceptors(),
                    drops=listen_drops(sock) if sock.fileno() >= 0 else None,
                    steer=steer_of(self.sup.config, sock) if len(socks) > 1 else None,
                )
            )
        return out

    def _refresh_syn(self, now: float, queued: bool) -> None:
        """Half-open connections per port (`self._syn`), by sock_diag, not /proc/net/tcp
        (~25 ms to read with 10k TIME-WAITs). They linger when a full accept queue drops
        the handshakes' last ACKs (ListenOverflows) or SYNs (ListenDrops): while a queue is
        non-empty or those counters moved since the last sample, they are read every
        sample; otherwise every SYN_EVERY_S, as the dump walks the kernel's whole
        established table (4-7 ms a dump with 60-90k TIME-WAIT on the host: read at 1 Hz,
        that was a quarter of the sampler's cost at 250 workers; bench/bench_sampler.py)."""
        drops = procfs.netstat_counters()
        moved, self._drops = drops != self._drops, drops
        if queued or moved or now - self._syn_at >= self.SYN_EVERY_S:
            syn = self._syn_recv()
            self._syn = syn if syn is not None else procfs.read_tcp_table().syn_recv
            self._syn_at = now

    def _owned_sample(
        self, r: OwnedListener, m: ListenerMechanism, syn: dict[int, int]
    ) -> ListenerSample:
        """A listener only a worker holds, as sock_diag read it (as `ss -ltn` shows it)."""
        config = self.sup.config
        return ListenerSample(
            index=r.index,
            port=r.sock.local_port,
            address=r.sock.local_address,
            queue=r.sock.rqueue,
            limit=r.sock.wqueue,
            syn_recv=syn.get(r.sock.local_port, 0),
            source="sock_diag",
            inode=r.sock.inode,
            spread=m.spread,
            wake=m.wake,
            waiters=m.acceptors(),
            drops=r.sock.drops,
            # the config's (no copy to read SO_INCOMING_CPU back from); migrating is not
            # steering: ModelInfo.policy says it
            steer=config.steer + ("+incoming-cpu" if config.incoming_cpu else ""),
        )
