"""The sampler: `Sampler.sample()` reads everything once and returns one raw Snapshot.

Raw: measured figures only. Its imbalance and diagnoses are the analyser's to fill in
(judging.analyser: `Analyser().annotate(sampler.sample())`), so that measuring is one
step and judging another, and replayed or synthetic snapshots are judged the same way.

Pull-based: the session (or the attach CLI) calls it on a timer, by
default every 250 ms. Two sources: `SupervisorSource` (a server we started: scoreboard,
owned sockets) and `AttachSource` (a server we did not start, by pid or port). Interval
figures (CPU %, accepts, requests, kernel counters in the interval) come from
`reading.Counter`s of the previous sample's totals. Hand-written: no library samples a
scoreboard, and psutil is too slow for 250 processes at 4 Hz (see procfs.py and
bench/bench_sampler.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from loadgen.stats import LoadStats
from readers import procfs
from readers.cgroupcpu import CgroupCpuReader
from values.server_info import HostSample, KernelCounters, ModelInfo
from values.snapshot import SAMPLE_PERIOD_S, ListenerSample, Snapshot, WorkerSample, is_stopped

from .attach_source import AttachError, AttachSource
from .reading import Counter, Reading, ReadingSource, WorkerDeltas
from .supervisor_source import SupervisorSource

if TYPE_CHECKING:
    from servers.supervisor import Supervisor

__all__ = ["DEFAULT_PERIOD", "AttachError", "Sampler"]

DEFAULT_PERIOD = SAMPLE_PERIOD_S  # the name commands/attach.py imports


class Sampler:
    """Call `sample()` on a timer; each call returns one raw Snapshot.

    `load` is an optional callable returning the load generator's live results (e.g.
    `LoadRunner.stats`); its exceptions are swallowed (client = None).
    """

    def __init__(
        self, source: ReadingSource, *, load: Callable[[], LoadStats | None] | None = None
    ):
        self.source = source
        self.load = load
        self._seq = 0
        self._prev_time: float | None = None
        self._ncpu = procfs.cpu_count()
        self._workers = WorkerDeltas()
        # the ad-hoc previous values: the master's CPU (per root pid), the model's
        # dispatches, the host's busy and total CPU, the kernel's overflows and drops
        self._totals: Counter[float] = Counter()
        self._stalled: dict[tuple[int, int, int], float] = {}  # listener -> stalled since
        self._cgroups = CgroupCpuReader()

    @classmethod
    def for_supervisor(cls, sup: Supervisor, *, watch: Collection[int] = (), **kw: Any) -> Sampler:
        """`watch`: pids whose /proc state is read every sample (workers we paused)."""
        return cls(SupervisorSource(sup, watch), **kw)

    @classmethod
    def attach(
        cls,
        *,
        pid: int | None = None,
        port: int | None = None,
        status_url: str | None = None,
        exact_accepts: bool | None = False,
        netns: str | None = None,
        **kw: Any,
    ) -> Sampler:
        """`exact_accepts`: False (default) counts new connections (an estimate); True
        tries eBPF; None tries it when root. `netns`: the network namespace to read the
        sockets in (a /proc/PID/ns/net or /run/netns/NAME; default: the pid's). See
        attach_source."""
        src = AttachSource(
            pid=pid, port=port, status_url=status_url, exact_accepts=exact_accepts, netns=netns
        )
        return cls(src, **kw)

    def sample(self) -> Snapshot:
        t0 = time.thread_time()
        now = time.monotonic()
        wall = time.time()
        iv = None if self._prev_time is None else now - self._prev_time
        self._workers.begin(iv)
        reading = self.source.read(now, self._workers)
        self._workers.end()
        totals = self._totals
        totals.begin()
        model = self._model(reading, iv)
        host_busy, host_total = procfs.host_cpu()
        busy, total = totals.delta("host busy", host_busy), totals.delta("host", host_total)
        host_pct = busy / total * 100.0 * self._ncpu if busy is not None and total else None
        kernel = self._kernel(iv)
        totals.end()
        pids = {w.pid for w in reading.workers if w.alive} | {model.root_pid}
        cgroups = self._cgroups.read(now, pids)
        snap = Snapshot(
            seq=self._seq,
            time=now,
            wall_time=wall,
            interval_s=iv,
            source=self.source.kind,
            model=model,
            workers=tuple(reading.workers),
            listeners=self._stalls(now, reading.listeners, reading.workers),
            phases=reading.phases,
            kernel=kernel,
            host=HostSample(cpu_count=self._ncpu, cpu_percent=host_pct),
            client=self._client(),
            cost_ms=(time.thread_time() - t0) * 1000.0,
            cpu_cgroups=cgroups,
        )
        self._seq += 1
        self._prev_time = now
        return snap

    def _stalls(
        self, now: float, listeners: list[ListenerSample], workers: list[WorkerSample]
    ) -> tuple[ListenerSample, ...]:
        """The listeners, each stalled one with `stalled_s`: non-empty, and every worker
        taking from it (its epoll owners when known, else the workers whose listener it
        is) stopped, in this sample and every one since `stalled_s` began."""
        stopped = {w.pid for w in workers if w.alive and is_stopped(w)}
        if not stopped and not self._stalled:
            return tuple(listeners)
        out, seen = [], {}
        for ln in listeners:
            if ln.owners:
                owners = set(ln.owners)
            else:
                owners = {w.pid for w in workers if w.alive and w.listener == ln.index}
            key = (ln.port, ln.index, ln.inode)
            if ln.queue > 0 and owners and owners <= stopped:
                since = seen[key] = self._stalled.get(key, now)
                ln = dataclasses.replace(ln, stalled_s=now - since)
            out.append(ln)
        self._stalled = seen
        return tuple(out)

    def _model(self, reading: Reading, iv: float | None) -> ModelInfo:
        """The source's model figures plus the master's CPU % and the dispatches in the
        interval."""
        m, totals = reading.model, self._totals
        used = totals.delta(("master", m.root_pid), reading.master_cpu_seconds)
        dispatches = totals.delta("dispatches", m.dispatches)
        return dataclasses.replace(
            m,
            master_cpu_percent=used / iv * 100.0 if used is not None and iv else None,
            dispatches_delta=None if dispatches is None else int(dispatches),
        )

    def _kernel(self, iv: float | None) -> KernelCounters | None:
        try:  # the server's namespace's (an attached server's may not be ours)
            net = getattr(self.source, "net_dir", "/proc/net")
            overflows, drops = procfs.netstat_counters(net)
        except OSError:  # /proc/PID/net of a server that has just exited: unknown
            return None
        od = self._totals.delta("overflows", overflows)
        dd = self._totals.delta("drops", drops)
        return KernelCounters(
            listen_overflows=overflows,
            listen_drops=drops,
            overflows_delta=None if od is None else int(od),
            drops_delta=None if dd is None else int(dd),
            overflows_per_s=od / iv if od is not None and iv else None,
            drops_per_s=dd / iv if dd is not None and iv else None,
        )

    def _client(self) -> LoadStats | None:
        if self.load is None:
            return None
        try:
            return self.load()
        except Exception:
            return None

    def close(self) -> None:
        """Release the /proc file descriptors the source keeps open."""
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
