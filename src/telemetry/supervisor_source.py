"""The source for a server we started: a `servers.supervisor.Supervisor`.

Worker figures from the shared scoreboard; CPU from /proc/PID/schedstat (per thread from
/proc/PID/task/TID/schedstat for thread workers); the accept queues by TCP_INFO on the
listening sockets the supervisor holds. Hand-written: no library samples a scoreboard,
and psutil is too slow for 250 processes at 4 Hz (see procfs.py and bench/bench_sampler.py).

Request phases (issue 16) from each worker slot's phase area (`PhaseReader`): a slot's three
counts are read every sample, its histograms only when a count moved.
"""

from __future__ import annotations

import os
from itertools import islice
from operator import add, sub
from typing import TYPE_CHECKING

from plumbing.loghist import NBUCKETS, LogHist
from plumbing.tcpinfo import accept_queue
from servers import scoreboard
from servers.scoreboard import State

from . import procfs
from .reading import Reading, WorkerDeltas
from .snapshot import Kind, ListenerSample, ModelInfo, Phases, Role, WorkerSample, WorkerState

if TYPE_CHECKING:
    from servers.scoreboard import ModelArea, Scoreboard, SlotInfo
    from servers.supervisor import Supervisor

_STATES = {st: WorkerState(st.name.lower()) for st in State}
_WORKER = scoreboard.Role.WORKER


class PhaseReader:
    """Each worker slot's request phases, and the whole server's (issue 16).

    Every sample reads a worker slot's three counts (3 words). A histogram whose count
    moved is read again (`Scoreboard.phase_words`: 203 words, and ~10 us of
    bookkeeping here) at once while at most REREAD_BUDGET slots were read again in this
    sample, else once its last reading is REREAD_S old: under load from hundreds of
    workers a slot's phases lag its request counts by up to a second, and a sample reads
    about nworkers / (REREAD_S x rate) slots (250 busy workers at 4 Hz: ~60, ~2 ms)
    instead of all of them (~15 ms measured); a server with few busy workers is read
    exactly every sample. The whole server's is kept as running dense sums: a histogram
    read again moves its old reading out and its new one in; a slot a new worker took
    keeps its predecessor's counts in (the server's figures are cumulative since start).
    """

    REREAD_BUDGET = 16  # slots read again at once per sample, whatever their age
    REREAD_S = 1.0  # beyond the budget, a changed slot is read again once a second

    def __init__(self, board: Scoreboard) -> None:
        self.board = board
        # slot -> its last reading: generation, counts, phases, when, raw words per phase
        self._seen: dict[int, tuple[int, tuple[int, int, int], Phases, float, list[list[int]]]]
        self._seen = {}
        self._dense = [[0] * NBUCKETS for _ in range(3)]
        self._sum = [0, 0, 0]
        self._max = [0, 0, 0]
        self._total: Phases | None = None  # None: changed since last built
        self._budget = 0

    def begin(self) -> None:
        """A new sample: its budget of slots read again at once."""
        self._budget = self.REREAD_BUDGET

    def slot(self, s: SlotInfo, now: float) -> Phases | None:
        """Slot `s`'s phases (cumulative since its worker started); None if never claimed."""
        if not s.generation:
            return None
        board = self.board
        counts = board.phase_counts(s.index)
        seen = self._seen.get(s.index)
        if seen is not None and seen[0] == s.generation:
            if seen[1] == counts:
                return seen[2]
            if self._budget <= 0 and now - seen[3] < self.REREAD_S:
                return seen[2]  # read again within the second
            hists = [seen[2].queue, seen[2].server, seen[2].service]
            raws = list(seen[4])
            for p in range(3):
                if counts[p] != seen[1][p]:
                    raws[p] = board.phase_words(s.index, p)
                    hists[p] = scoreboard.hist_of(raws[p])
                    self._account(p, raws[p], seen[4][p])  # the older reading out
        else:  # a new worker: its predecessor's reading stays in the total
            raws = [board.phase_words(s.index, p) for p in range(3)]
            hists = [scoreboard.hist_of(r) for r in raws]
            for p in range(3):
                self._account(p, raws[p], None)
        self._budget -= 1
        phases = Phases(hists[0], hists[1], hists[2])
        self._seen[s.index] = (s.generation, counts, phases, now, raws)
        return phases

    def _account(self, p: int, new: list[int], old: list[int] | None) -> None:
        """Move histogram p of a slot from its `old` raw words to `new` in the totals (C-speed
        map over the buckets: ~5 us, where a loop over LogHist buckets took ~20)."""
        if old is None:
            self._dense[p] = list(map(add, self._dense[p], islice(new, 3, None)))
            self._sum[p] += new[1]
        else:
            diff = map(sub, islice(new, 3, None), islice(old, 3, None))
            self._dense[p] = list(map(add, self._dense[p], diff))
            self._sum[p] += new[1] - old[1]
        if new[2] > self._max[p]:
            self._max[p] = new[2]
        self._total = None

    def total(self) -> Phases:
        """The whole server's: every slot's, its past workers' included."""
        if self._total is None:
            d, sums, maxes = self._dense, self._sum, self._max
            self._total = Phases(*(LogHist.from_counts(d[p], sums[p], maxes[p]) for p in range(3)))
        return self._total


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
        self._refresh = True  # this sample reads the full stat afresh
        self._stats: dict[int, procfs.Stat | None] = {}  # this sample's
        self._full: dict[int, procfs.Stat] = {}  # the last refresh's
        self._syn: dict[int, int] = {}
        self._syn_at = -1e9
        self._phases: PhaseReader | None = None
        self._addr = []
        for s in sup.listeners:
            name = s.getsockname()
            self._addr.append((name[0], name[1], os.fstat(s.fileno()).st_ino))

    def close(self) -> None:
        self.stat.close()

    def read(self, now: float, deltas: WorkerDeltas) -> Reading:
        sup = self.sup
        if sup.scoreboard is None or sup.proc is None:
            raise RuntimeError("the server is not running")
        board = sup.scoreboard.read()
        root_pid = sup.proc.pid
        self._n += 1
        self._refresh = self._n % self.FULL_STAT_EVERY == 1
        self._stats = {}
        phases = None
        if sup.scoreboard.phases_on:
            if self._phases is None:
                self._phases = PhaseReader(sup.scoreboard)
            phases = self._phases
            phases.begin()
        workers = [self._worker(s, now, deltas, phases) for s in board.slots]
        # the root's CPU is all its threads' (stat), read every sample: the master's own
        # share is told from the worker threads living in it (goroutines)
        root = self._stats[root_pid] = self.stat.proc(root_pid)
        model = self._model(board.model, root_pid, root, workers, now)
        if self._refresh:
            self.stat.sweep()  # fds of workers gone since the last refresh
            self._full = {pid: st for pid, st in self._stats.items() if st is not None}
        return Reading(
            model,
            root.cpu_seconds if root else None,
            workers,
            self._listeners(now),
            phases.total() if phases is not None else None,
        )

    # -- workers ------------------------------------------------------------------------
    def _pstat(self, pid: int) -> procfs.Stat | None:
        """/proc/PID/stat: read afresh on a refresh sample, else the last reading."""
        if pid not in self._stats:
            cached = None if self._refresh else self._full.get(pid)
            self._stats[pid] = cached if cached is not None else self.stat.proc(pid)
        return self._stats[pid]

    def _process_cpu(self, pid: int) -> float | None:
        st = self._pstat(pid)
        if st is None:
            return None
        if st.num_threads == 1:  # the main thread is the whole process
            return self.stat.cpu_seconds(f"/proc/{pid}/schedstat")
        fresh = st if self._refresh else self.stat.proc(pid)
        return fresh.cpu_seconds if fresh else None

    def _worker(
        self, s: SlotInfo, now: float, deltas: WorkerDeltas, phases: PhaseReader | None
    ) -> WorkerSample:
        alive = s.state not in (State.EMPTY, State.DEAD) and s.pid > 0
        thread = s.kind == scoreboard.Kind.THREAD
        cpu = rss = None
        if alive:
            p = self._pstat(s.pid)
            rss = p.rss_bytes if p else None
            if thread:
                cpu = self.stat.cpu_seconds(f"/proc/{s.pid}/task/{s.tid}/schedstat")
            else:
                cpu = self._process_cpu(s.pid)
        key = (s.index, s.tid if thread else s.pid, s.generation)
        pct, acc, req = deltas(key, alive, cpu, s.accepted, s.requests)
        return WorkerSample(
            slot=s.index,
            pid=s.pid,
            tid=s.tid,
            generation=s.generation,
            kind=Kind.THREAD if thread else Kind.PROCESS,
            state=_STATES[s.state],
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
            role=Role[scoreboard.Role(s.role).name],
            phases=phases.slot(s, now) if phases is not None and s.role == _WORKER else None,
        )

    # -- the model ------------------------------------------------------------------------
    def _model(
        self,
        m: ModelArea,
        root_pid: int,
        root: procfs.Stat | None,
        workers: list[WorkerSample],
        now: float,
    ) -> ModelInfo:
        processes = {w.pid for w in workers if w.alive} | {root_pid}
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
        )

    # -- listeners ------------------------------------------------------------------------
    def _listeners(self, now: float) -> list[ListenerSample]:
        socks = self.sup.listeners
        queues = [accept_queue(sock) if sock.fileno() >= 0 else None for sock in socks]
        # SYN_RECV by sock_diag, not /proc/net/tcp (~25 ms to read with 10k TIME_WAITs);
        # half-open connections pile up when accept queues fill, so while any queue is
        # non-empty it is read every sample, otherwise once a second.
        if any(q and q[0] for q in queues) or now - self._syn_at >= self.SYN_EVERY_S:
            syn = procfs.syn_recv_counts()
            self._syn = syn if syn is not None else procfs.read_tcp_table().syn_recv
            self._syn_at = now
        out = []
        for i, q in enumerate(queues):
            address, port, inode = self._addr[i]
            queue, limit = q if q is not None else (0, None)
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
                )
            )
        return out
