"""The immutable values the sampler produces and everything else reads (TUI, attach, recordings).

One `Snapshot` per sample. It holds only plain data (no handles, no I/O), so a TUI can be
driven and tested from recorded or synthetic snapshots alone (see `synthetic`).

Units, everywhere in this module:
- times: `time` fields are `time.monotonic()` seconds (CLOCK_MONOTONIC, system-wide, so the
  scoreboard's and the load generator's times compare with them); `*_s` fields are seconds;
  `*_ms` fields are milliseconds;
- CPU: percent of ONE core over the sampling interval (a process using two full cores
  reads 200.0; a host with 2 cores tops out at 200.0);
- memory: bytes;
- counts: plain integers; "in the interval" means since the previous sample, "total" since
  the worker (or the run) started.
A field that could not be measured is None (the first sample has no interval, so no CPU %
and no deltas; an attached server has no scoreboard, so no accepts and state "unknown").

JSON: `Snapshot.to_dict()` gives JSON-ready builtins carrying `FORMAT_VERSION`;
`Snapshot.from_dict(d)` gives back an equal Snapshot, its enum fields as enums
(values.codec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from loadgen.stats import LoadStats
from plumbing.loghist import LogHist
from servers.slots import GLYPHS as SCOREBOARD_GLYPHS

from . import snapshot_checks
from .blocked import Blocked
from .cgroupcpu import CpuLimit
from .codec import Checks, FormatError, decode, encode, kind_of
from .current import Current, Peer, Peers
from .findings import Diagnosis, ImbalanceSet
from .phases import Phases
from .server_info import HostSample, KernelCounters, ModelInfo
from .spread import Spread, Wake, mechanism_label
from .stackvalues import StackCapture
from .stuck import Episode, StuckCapture

__all__ = [
    "FORMAT_VERSION",
    "GLYPHS",
    "STATES",
    "Hold",
    "Kind",
    "ListenerSample",
    "Role",
    "Snapshot",
    "WorkerSample",
    "WorkerState",
    "is_stopped",
]

FORMAT_VERSION = 1
SAMPLE_PERIOD_S = 0.25  # seconds between samples, every source's and view's default


class Kind(StrEnum):
    """What a worker is to the kernel (the scoreboard's Kind, by name)."""

    PROCESS = "process"
    THREAD = "thread"


class WorkerState(StrEnum):
    """The scoreboard's states (servers.slots.State, lower-cased) plus UNKNOWN for
    attached servers, which have no scoreboard. The values are what recordings and JSON
    carry, so recordings made before the enum read unchanged."""

    EMPTY = "empty"
    STARTING = "starting"
    WAITING = "waiting"
    READING = "reading"
    WORKING = "working"
    WRITING = "writing"
    KEEPALIVE = "keepalive"
    CLOSING = "closing"
    DEAD = "dead"
    UNKNOWN = "unknown"
    STOPPED = "stopped"  # attached: /proc state T or t (SIGSTOPped, traced): serves nothing


class Hold(StrEnum):
    """What the one connection a pinned worker holds has done, read from its socket
    (attach: TCP_INFO through sock_diag): the mechanism behind a starved worker, and so
    the fix (a keep-alive timeout, a request timeout, a proxy that buffers requests)."""

    KEEPALIVE = "keepalive"  # a response went out, then nothing came: idle keep-alive
    PARTIAL = "partial"  # request bytes came in, no response yet, nothing new since
    SILENT = "silent"  # not one byte received since the connection opened


STATES = tuple(WorkerState)
# Apache mod_status glyphs, from the scoreboard's ("X" dead is ours), "?" unknown
GLYPHS: dict[str, str] = {
    **{WorkerState(st.name.lower()): glyph for st, glyph in SCOREBOARD_GLYPHS.items()},
    WorkerState.UNKNOWN: "?",
    WorkerState.STOPPED: "T",  # not an Apache glyph: /proc's letter, drawn to stand out
}
BUSY_STATES = frozenset(
    {
        WorkerState.READING,
        WorkerState.WORKING,
        WorkerState.WRITING,
        WorkerState.KEEPALIVE,
        WorkerState.CLOSING,
    }
)


_NOT_ALIVE = frozenset({WorkerState.EMPTY, WorkerState.DEAD})


class Role(StrEnum):
    """What a sampled entity does. Only WORKERs serve requests, so imbalance and diagnoses
    are computed over them alone: counting event's listener threads as workers made a
    permanent false "accept skew" (78 "workers" for 75 threads, one holding 25% of the
    connections), and attaching counted a master as a fifth worker of four."""

    WORKER = "worker"  # serves requests (a process, a thread, an event loop)
    LISTENER = "listener"  # accepts and hands connections on (event's listener thread)
    MASTER = "master"  # the root of a forking server (attach)
    HELPER = "helper"  # anything else in the tree (e.g. multiprocessing's resource_tracker);
    # of Kind.THREAD, a thread of an attached worker process: see WorkerSample.folded
    PROCESS = "process"  # attach: a process whose threads each wait on the listener and
    # serve (HAProxy nbthread, Envoy): its threads are the workers, its row sums theirs

    @classmethod
    def _missing_(cls, value: object) -> Role | None:
        """Recordings made while a folded thread had a role of its own ("thread")."""
        return cls.HELPER if value == "thread" else None


# members as module constants: `Kind.PROCESS` is an attribute lookup through the enum's
# metaclass, ~0.27 us against ~0.03 us for a global, and the properties below run once per
# worker per frame in every renderer (1,024 workers at 4 Hz: bench/bench_tui.py)
_PROCESS, _THREAD, _WORKER, _HELPER = Kind.PROCESS, Kind.THREAD, Role.WORKER, Role.HELPER


# a worker's identity, WorkerSample.key: (slot, pid of a process or tid of a thread,
# generation); what the analysis, the aggregates and the views key each worker by
WorkerKey = tuple[int | None, int, int]


@dataclass(frozen=True, slots=True)
class WorkerSample:
    """One worker: a process (prefork-like models) or a thread (worker/event/goroutines).

    Identity is `key` = (slot, task, generation), built from what the source filled in:
    the task is the pid of a process and the tid of a thread, the generation the slot's
    (scoreboard) or the task's start time (attach). A respawned worker in the same slot,
    or a reused pid, is a new worker, and its deltas start afresh.
    """

    slot: int | None  # scoreboard slot; None for attached servers (no scoreboard)
    pid: int  # process id (thread workers share their process's pid)
    tid: int  # kernel thread id; == pid for process workers and attached processes
    generation: int  # scoreboard generation of the slot; when attached, the process start
    # time in clock ticks (so a reused pid is a different worker)
    kind: Kind
    state: WorkerState  # UNKNOWN when attached
    group: int = -1  # child-process index of a thread worker, -1 for process workers
    listener: int = -1  # index into Snapshot.listeners it accepts on, -1 none/unknown
    state_age_s: float | None = None  # seconds in its current state
    age_s: float | None = None  # seconds since the worker started
    cpu_percent: float | None = None  # user+sys over the interval, % of one core (per thread
    # for thread workers, per process otherwise); None on the first sample
    cpu_seconds: float | None = None  # user+sys CPU seconds used so far (this thread/process)
    rss_bytes: int | None = None  # resident memory of its PROCESS (shared by its threads)
    connections: int | None = None  # open connections (scoreboard, or psutil when attached)
    accepts: int | None = None  # accepted in the interval (None when unknown)
    accepts_total: int | None = None  # accepted since the worker started
    requests: int | None = None  # requests served in the interval
    requests_total: int | None = None  # requests served since the worker started
    bytes_sent_total: int | None = None  # bytes sent since the worker started
    deaths: int = 0  # times a worker in this slot has died (scoreboard)
    name: str = ""  # process name (attach) or "" (scoreboard workers)
    role: Role = Role.WORKER  # recordings made before roles existed read as workers
    proc_state: str | None = None  # attach: the /proc state letter (R S D T t Z), else None
    phases: Phases | None = None  # cumulative since the worker started; None: not measured
    window_phases: Phases | None = None  # the analyser's: what `phases` gained over the
    # window (window_s); None when `phases` is None or not analysed
    hold: Hold | None = None  # attach: what its connections have done, from each socket's
    # TCP_INFO (bytes in and out, last data each way); None: none, not all alike, or unread
    current: Current | None = None  # its current (or last) request and client, and since
    # when (values.current: the scoreboard's slot, or mod_status); None unknown
    peers: Peers | None = None  # attach: the connections it holds as their sockets show
    # them (sock_diag, tcp_info; the oldest listed); None: not read
    blocked: Blocked | None = None  # attach: the system call its main thread waits in
    # (/proc/PID/syscall), read for a process worker holding a connection; None: not read

    @property
    def key(self) -> WorkerKey:
        return (self.slot, self.pid if self.kind == _PROCESS else self.tid, self.generation)

    @property
    def glyph(self) -> str:
        return GLYPHS.get(self.state, "?")

    @property
    def is_thread(self) -> bool:
        return self.kind == _THREAD

    @property
    def is_worker(self) -> bool:
        """Serves requests (not a listener, master or helper)."""
        return self.role == _WORKER

    @property
    def alive(self) -> bool:
        """A worker is in the slot (not an open slot, not dead)."""
        return self.state not in _NOT_ALIVE

    @property
    def busy(self) -> bool:
        """Holding a connection (reading, working, writing, keep-alive or closing)."""
        return self.state in BUSY_STATES

    @property
    def label(self) -> str:
        """How diagnosis lines and tables name it: 'worker 3' (slot), 'pid 1234', or
        'tid 1236' (an attached process's thread: its pid names the whole process)."""
        if self.slot is not None:
            return f"worker {self.slot}"
        return f"tid {self.tid}" if self.kind == _THREAD else f"pid {self.pid}"

    @property
    def folded(self) -> bool:
        """attach: a thread of a multi-threaded worker process that does not serve on its
        own, a row folded under its process (sockets belong to processes, so the process
        is the worker the indices count)."""
        return self.role == _HELPER and self.kind == _THREAD


def is_stopped(w: WorkerSample) -> bool:
    """Stopped by a signal or a tracer (/proc state T or t): it serves nothing until
    continued, whatever state it last wrote to a scoreboard."""
    return w.state == WorkerState.STOPPED or w.proc_state in ("T", "t")


@dataclass(frozen=True, slots=True)
class ListenerSample:
    """One listening socket and its accept queue."""

    index: int  # position in the model's listener list (reuseport: worker slot index)
    port: int
    address: str  # local address, e.g. "127.0.0.1" or "::"
    queue: int  # connections completed by the kernel, waiting for accept() (Recv-Q)
    limit: int | None  # accept-queue limit: min(backlog, net.core.somaxconn) (ss Send-Q);
    # None when it could not be read (attach without sock_diag)
    syn_recv: int | None = None  # half-open (SYN_RECV) sockets to this PORT (all listeners
    # on the port share this figure; None when /proc/net/tcp could not be read)
    source: str = "tcp_info"  # "tcp_info" (socket we own), "sock_diag" (attach) or "proc_net_tcp"
    inode: int = 0  # socket inode (as in /proc/net/tcp and `ss -e`), 0 when unknown
    owners: tuple[int, ...] = ()  # attach: pids whose epoll set holds it (reuseport: the one
    # worker taking its connections); () when unknown or not epoll
    # how connections on it reach the workers, read from /proc/PID/fdinfo of the epoll fds
    # and /proc/PID/task/TID/syscall when a worker starts or the listener set changes
    # (readers.mechanism); None: not read, or nobody was seen waiting on it
    spread: Spread | None = None
    wake: Wake | None = None
    waiters: int | None = None  # processes or threads taking from it: seen waiting on it,
    # and at least every worker process holding it (readers.mechanism: acceptors)
    stalled_s: float | None = None  # the sampler's: seconds in which every sample saw this
    # queue non-empty and every worker taking from it stopped (/proc state T): the
    # connections queued at the first such sample are still there, so the oldest has
    # waited at least this long; None when not stalled now (or not known who takes from it)
    drops: int | None = None  # handshakes this socket dropped since it was made (its sk_drops,
    # what ListenDrops counts for it: SO_MEMINFO, or sock_diag SKMEMINFO when attached);
    # unlike KernelCounters, this socket's own; None when not read
    steer: str | None = None  # a reuseport group's choice: "hash", "cbpf-cpu", "ebpf-rr" (the
    # lab's config: the kernel gives an attached program no read-back), "+incoming-cpu" when
    # getsockopt(SO_INCOMING_CPU) read a CPU on this socket; None: not known (attach)

    @property
    def mechanism(self) -> str:
        """The accept mechanism in one line ('unknown' when not read)."""
        return mechanism_label(self.spread, self.wake, self.waiters, self.steer)

    @property
    def fill(self) -> float:
        """queue / limit, 0..1 (0 when the limit is unknown)."""
        return self.queue / self.limit if self.limit else 0.0

    @property
    def full(self) -> bool:
        return bool(self.limit) and self.queue >= (self.limit or 0)

    @property
    def past_limit(self) -> bool:
        """Queue one past the limit: a true reading, not a glitch. Linux counts a queue
        full only when its length is ABOVE the backlog (sk_acceptq_is_full), so it admits
        limit + 1 (`ss -ltn` shows Recv-Q 17, Send-Q 16 for a full listen(fd, 16))."""
        return self.limit is not None and self.queue > self.limit


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything measured in one sample."""

    seq: int  # 0, 1, 2, ... per sampler
    time: float  # time.monotonic() at the sample
    wall_time: float  # time.time() at the sample (for recordings and display)
    interval_s: float | None  # since the previous sample; None on the first
    source: str  # "supervisor", "attach" or "synthetic"
    model: ModelInfo | None = None
    workers: tuple[WorkerSample, ...] = ()  # live workers plus dead/empty slots ever used
    listeners: tuple[ListenerSample, ...] = ()
    kernel: KernelCounters | None = None
    host: HostSample | None = None
    client: LoadStats | None = None  # the load generator's live results, when one runs
    window_s: float = 5.0  # the sliding window behind `imbalance` and `diagnoses`
    imbalance: ImbalanceSet = field(default_factory=ImbalanceSet)
    diagnoses: tuple[Diagnosis, ...] = ()
    cost_ms: float | None = None  # sampler CPU time spent producing this snapshot, ms
    phases: Phases | None = None  # the whole server's, cumulative; None: not measured
    window_phases: Phases | None = None  # the analyser's: what `phases` gained over the
    # window (window_s); None when `phases` is None or not analysed
    stuck: tuple[StuckCapture, ...] = ()  # the lab's automatic stack captures of stuck
    # workers that finished since the previous snapshot (values.stuck), each in one snapshot
    cpu_cgroups: tuple[CpuLimit, ...] = ()  # the cgroups its processes live in, each with
    # its CPU limit and throttling (values.cgroupcpu, from cpu.max / cfs_quota_us and
    # cpu.stat); (): not read

    # -- conveniences for readers --------------------------------------------------------
    @property
    def live_workers(self) -> tuple[WorkerSample, ...]:
        """Live entities whose role is worker (listeners, masters, helpers left out)."""
        return tuple(w for w in self.workers if w.role == _WORKER and w.state not in _NOT_ALIVE)

    @property
    def live_entities(self) -> tuple[WorkerSample, ...]:
        """Every live sampled entity, whatever its role."""
        return tuple(w for w in self.workers if w.alive)

    @property
    def queue(self) -> int:
        """Accept-queue length summed over the listeners."""
        return sum(ln.queue for ln in self.listeners)

    @property
    def queue_limit(self) -> int:
        return sum(ln.limit or 0 for ln in self.listeners)

    def totals(self) -> dict[str, float]:
        """Sums over live entities (listeners too: they hold and accept connections) of:
        connections, accepts (interval), cpu_percent. An attached process's thread rows
        (no slot) are left out: their process's row already holds their figures."""
        live = [w for w in self.live_entities if not (w.kind == _THREAD and w.slot is None)]
        return {
            "connections": sum(w.connections or 0 for w in live),
            "accepts": sum(w.accepts or 0 for w in live),
            "accepts_total": sum(
                w.accepts_total or 0
                for w in self.workers
                if not (w.kind == _THREAD and w.slot is None)
            ),
            "cpu_percent": sum(w.cpu_percent or 0.0 for w in live),
        }

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = encode(self)
        d["version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        """Read back, every value checked (codec, snapshot_checks): FormatError otherwise."""
        if not isinstance(d, dict):
            raise FormatError(f"a snapshot is a JSON object, not {kind_of(d)}")
        version = d.get("version")
        if version != FORMAT_VERSION:
            raise FormatError(
                f"snapshot format version {version!r}; this serverscope reads {FORMAT_VERSION}"
            )
        body = {k: v for k, v in d.items() if k != "version"}
        return decode(cls, body, _CHECKS)  # type: ignore[no-any-return]


# what values may be beyond their types (a recording is input like any other)
_CHECKS = Checks(
    {
        LogHist: snapshot_checks.loghist,
        Snapshot: snapshot_checks.snapshot,
        Current: snapshot_checks.current,
        Peer: snapshot_checks.peer,
        Peers: snapshot_checks.peers,
        StackCapture: snapshot_checks.stack,
        Episode: snapshot_checks.episode,
    }
)
