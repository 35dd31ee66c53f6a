"""Imbalance over a sliding window of snapshots: pure functions, no I/O.

Written here because the measures are three lines of arithmetic (Jain's index, top share,
max/mean) and the windowing rules (per worker identity, no index without events) are ours.
"""

from __future__ import annotations

import collections
import dataclasses
import operator
from collections.abc import Sequence
from typing import Any

from plumbing.loghist import LogHist
from values.findings import Imbalance, ImbalanceSet
from values.phases import Phases
from values.positional import positional_new
from values.snapshot import Kind, Role, Snapshot, WorkerKey, WorkerSample, WorkerState

DEFAULT_WINDOW_S = 5.0
_WORKER, _PROCESS = Role.WORKER, Kind.PROCESS
_NOT_ALIVE = frozenset({WorkerState.EMPTY, WorkerState.DEAD})  # as WorkerSample.alive
# one worker's figures in one sample: its key, accepts, connections, CPU seconds
_Row = tuple[WorkerKey, int | None, int | None, float | None]


def window(history: Sequence[Snapshot], window_s: float = DEFAULT_WINDOW_S) -> list[Snapshot]:
    """The snapshots of `history` (oldest first) whose interval ends in the last `window_s`."""
    if not history:
        return []
    cutoff = history[-1].time - window_s + 1e-6  # an interval ending at the cutoff is out
    out = [s for s in history if s.time > cutoff]
    return out


def covered_s(win: Sequence[Snapshot]) -> float:
    """Seconds of measurement behind a window: the sum of its snapshots' intervals."""
    return sum(s.interval_s or 0.0 for s in win)


def load_over(s: Snapshot) -> bool:
    """The load generator's time was up at this sample (its drain, or it has ended): what
    the server does then (its queue draining to whoever is free) is teardown, not load.
    Not before it began (the runner's stats before its first publication: not running,
    nothing elapsed)."""
    c = s.client
    return c is not None and (c.draining or (not c.running and c.elapsed > 0))


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index (sum x)^2 / (n * sum x^2); None without events."""
    n = len(values)
    sq = sum(x * x for x in values)
    if n == 0 or sq <= 0:
        return None
    total = sum(values)
    return total * total / (n * sq)


def measure(metric: str, per_worker: dict[WorkerKey, tuple[str, float]], span: float) -> Imbalance:
    """The three measures over {key: (label, x)}."""
    n = len(per_worker)
    total = sum(x for _, x in per_worker.values())
    if n == 0 or total <= 1e-9:
        return Imbalance(metric=metric, window_s=span, n=n, total=total)
    label, top = max(per_worker.values(), key=lambda lx: lx[1])
    share = top / total
    return Imbalance(
        metric=metric,
        window_s=span,
        n=n,
        total=total,
        jain=jain([x for _, x in per_worker.values()]),
        top_share=share,
        max_over_mean=n * share,
        top_worker=label,
    )


class ImbalanceTracker:
    """Running sums behind `imbalance_set`, so the sampler pays O(workers) per sample
    instead of O(workers x snapshots in the window): `add` the newest snapshot, `evict`
    the ones that left the window, read `result()`.

    x_i: accepts in the window; mean open connections while measured; CPU seconds.
    Only entities whose role is worker count (never event's listener threads, a master
    or a helper), and only those alive in EVERY snapshot of the window: a worker that died
    in it (or was spawned in it, as a growing prefork pool's children are) had less time
    to accept, so counting it fakes skew (seen: "Jain 0.02, 104 workers" with 78 alive
    after a kill; "worker 0 took 14%, 20 workers" while prefork grew from 5 to 20).
    A respawned worker (new generation) is another worker.
    """

    def __init__(self) -> None:
        self._entries: collections.deque[tuple[Snapshot, list[_Row]]] = collections.deque()
        # key -> [snapshots alive in the window, accepts, connections summed, snapshots
        # measuring connections, CPU seconds]: one dict entry per worker, not five dicts
        # (add, evict and result run once per worker per sample: at 400 thread workers
        # they were a sixth of the sampler's cost, py-spy of bench/bench_sampler.py)
        self._stats: dict[WorkerKey, list[Any]] = {}
        self._label: dict[WorkerKey, str] = {}
        self._seen = [0, 0, 0]  # samples measuring accepts, connections, cpu
        self._span = 0.0

    def add(self, snap: Snapshot) -> None:
        iv = snap.interval_s
        rows: list[_Row] = []
        stats, label = self._stats, self._label
        seen_a = seen_c = seen_u = 0
        # once per worker per sample: WorkerSample's properties (alive, is_worker, key,
        # label) inlined, the label made once per identity (it is fixed by the key)
        for w in snap.workers:
            if w.role != _WORKER or w.state in _NOT_ALIVE:
                continue
            k = (w.slot, w.pid if w.kind == _PROCESS else w.tid, w.generation)  # w.key
            a = w.accepts if (w.accepts is not None and iv is not None) else None
            c = w.connections
            u = w.cpu_percent * iv / 100.0 if (w.cpu_percent is not None and iv) else None
            rows.append((k, a, c, u))
            st = stats.get(k)
            if st is None:
                st = stats[k] = [0, 0, 0, 0, 0.0]
                label[k] = w.label
            st[0] += 1
            if a is not None:
                seen_a += 1
                st[1] += a
            if c is not None:
                seen_c += 1
                st[2] += c
                st[3] += 1
            if u is not None:
                seen_u += 1
                st[4] += u
        seen = self._seen
        seen[0] += seen_a
        seen[1] += seen_c
        seen[2] += seen_u
        self._span += iv or 0.0
        self._entries.append((snap, rows))

    def evict(self, cutoff: float) -> None:
        """Drop the snapshots taken at or before `cutoff` (a monotonic time)."""
        stats, label, seen = self._stats, self._label, self._seen
        while self._entries and self._entries[0][0].time <= cutoff:
            snap, rows = self._entries.popleft()
            self._span -= snap.interval_s or 0.0
            for k, a, c, u in rows:
                st = stats[k]
                if a is not None:
                    seen[0] -= 1
                    st[1] -= a
                if c is not None:
                    seen[1] -= 1
                    st[2] -= c
                    st[3] -= 1
                if u is not None:
                    seen[2] -= 1
                    st[4] -= u
                st[0] -= 1
                if st[0] == 0:
                    del stats[k]
                    label.pop(k, None)
        if not self._entries:
            self._span = 0.0

    def result(self) -> ImbalanceSet:
        if not self._entries:
            return ImbalanceSet()
        span = max(0.0, self._span)
        whole = len(self._entries)
        lab = self._label
        acc: dict[WorkerKey, tuple[str, float]] = {}
        conn: dict[WorkerKey, tuple[str, float]] = {}
        cpu: dict[WorkerKey, tuple[str, float]] = {}
        for k, (alive, a, c, cn, u) in self._stats.items():
            if alive != whole:
                continue
            name = lab[k]
            acc[k] = (name, float(a))
            conn[k] = (name, c / cn if cn else 0.0)
            # float running sums leave ~1e-17 residues: below a microsecond is no CPU
            cpu[k] = (name, u if u > 1e-6 else 0.0)
        return ImbalanceSet(
            accepts=measure("accepts", acc, span) if self._seen[0] else None,
            connections=measure("connections", conn, span) if self._seen[1] else None,
            cpu=measure("cpu", cpu, span) if self._seen[2] else None,
        )


def imbalance_set(win: Sequence[Snapshot]) -> ImbalanceSet:
    """Accepts, connections and CPU imbalance over the window (the latest snapshot last).

    A metric nobody measured (e.g. accepts when attached) gives None; a measured metric
    with no events gives an Imbalance whose indices are None.
    """
    t = ImbalanceTracker()
    for s in win:
        t.add(s)
    return t.result()


def run_accepts(snap: Snapshot) -> Imbalance | None:
    """Accept imbalance since the workers started (their scoreboard totals), so skew stays
    visible after a burst has left the window: after `burst` the window's accepts are 0
    for everyone and its index is None, but the run's are 19/1/0/0. Over workers only
    (the dead included: they accepted too); None when accepts are not measured."""
    # what `measure` gives for {w.key: (w.label, accepts_total)}, without a label and a
    # key per worker: the imbalance panel calls this every frame, and at 1,024 workers
    # the dict cost ~4 ms a frame (py-spy of the TUI, bench/bench_tui.py)
    xs: list[float] = []
    top: WorkerSample | None = None
    best = 0
    empty = WorkerState.EMPTY
    for w in snap.workers:
        a = w.accepts_total
        if a is None or w.role != _WORKER or w.state == empty:
            continue
        xs.append(float(a))
        if top is None or a > best:  # the first of the largest, as max() picks
            top, best = w, a
    if top is None:
        return None
    n, total = len(xs), sum(xs)
    if total <= 1e-9:
        return Imbalance(metric="accepts", window_s=0.0, n=n, total=total)
    share = best / total
    return Imbalance(
        metric="accepts",
        window_s=0.0,
        n=n,
        total=total,
        jain=jain(xs),
        top_share=share,
        max_over_mean=n * share,
        top_worker=top.label,
    )


# -- request phases over the window ------------------------------------------------


_NOTHING = LogHist()


def _hist_minus(new: LogHist | None, old: LogHist | None) -> LogHist | None:
    if new is None:
        return None
    if old is None:
        return new
    if new.count == old.count:  # nothing recorded since (an idle worker): no bucket walk
        return _NOTHING
    return new.minus(old)


def phases_minus(new: Phases | None, old: Phases | None) -> Phases | None:
    """What the cumulative `new` gained since the older reading `old` of the same phases
    (None when `new` is None: not measured; `new` itself when there is no older reading).
    A phase measured now but not then counts from its start."""
    if new is None:
        return None
    if old is None:
        return new
    return Phases(
        queue=_hist_minus(new.queue, old.queue),
        server=_hist_minus(new.server, old.server),
        service=_hist_minus(new.service, old.service),
    )


_FIELDS = [f.name for f in dataclasses.fields(WorkerSample)]
_WINDOW = _FIELDS.index("window_phases")
# PhaseWindow rebuilds WorkerSample positionally: the fields before window_phases, its
# own, the fields after (two or more: attrgetter of one name gives a value, not a tuple)
assert len(_FIELDS) - _WINDOW > 2, "PhaseWindow rebuilds WorkerSample positionally"
_BEFORE_WINDOW = operator.attrgetter(*_FIELDS[:_WINDOW])
_AFTER_WINDOW = operator.attrgetter(*_FIELDS[_WINDOW + 1 :])
_new_sample = positional_new(WorkerSample)


class PhaseWindow:
    """The phases over the analyser's window, per worker and overall, from cumulative
    readings (Snapshot.phases, WorkerSample.phases): latest minus the reading taken just
    before the window (`base`, the last snapshot to leave it), so the window's phases cover
    exactly its snapshots' intervals, as the imbalance does. Before any snapshot has left
    the window, the base is none and the window holds all since the start.

    `annotate` costs nothing when phases are unmeasured (every worker's and the snapshot's
    phases None: the snapshot is returned as is), and otherwise one bucket walk per phase
    of each worker whose reading moved: a worker whose cumulative and base readings are the
    same objects as last time (the supervisor source hands the same Phases while a slot's
    counts stand still) gets its last result back, one whose count did not move since the
    base an empty window. Cost (bench/bench_phase_window.py, ~84 non-empty buckets a
    histogram, 2-core box shared with other jobs): 4 workers +0.2 ms a sample; 250 workers
    +10 ms when every one records requests every sample (a storm: 4% of a core at 4 Hz),
    +3.4 ms when a tenth do; 1,024 workers, a tenth moving, +17 ms. Most of it is
    LogHist.minus walking each moved histogram's buckets (a set difference of the bucket
    pairs was slower: tuples do not cache their hashes) and one dataclasses.replace a
    worker."""

    def __init__(self) -> None:
        self._base: Snapshot | None = None
        self._base_workers: dict[WorkerKey, Phases] = {}
        self._last: dict[WorkerKey, tuple[Phases, Phases | None, Phases | None]] = {}

    def leave(self, snap: Snapshot) -> None:
        """`snap` left the window: the newest such is the base."""
        self._base = snap
        self._base_workers = {w.key: w.phases for w in snap.workers if w.phases is not None}

    def reset(self) -> None:
        self._base = None
        self._base_workers = {}
        self._last = {}

    def annotate(self, snap: Snapshot) -> Snapshot:
        measured = snap.phases is not None or any(w.phases is not None for w in snap.workers)
        if not measured:
            return snap
        base = self._base_workers
        last = self._last
        now: dict[WorkerKey, tuple[Phases, Phases | None, Phases | None]] = {}
        workers = []
        for w in snap.workers:
            cur = w.phases
            if cur is None:
                workers.append(w)
                continue
            key = w.key
            old = base.get(key)
            seen = last.get(key)
            if seen is not None and seen[0] is cur and seen[1] is old:
                result = seen[2]
            else:
                result = phases_minus(cur, old)
            now[key] = (cur, old, result)
            # WorkerSample with window_phases set: positionally, from a C-level getter of
            # the fields before it (hold, the one after, by hand); dataclasses.replace
            # cost 22 us a worker, 23 ms a sample at 1,024 workers (cProfile), this ~4 us
            workers.append(_new_sample(*_BEFORE_WINDOW(w), result, *_AFTER_WINDOW(w)))
        self._last = now
        overall = phases_minus(snap.phases, self._base.phases if self._base else None)
        return dataclasses.replace(snap, workers=tuple(workers), window_phases=overall)


def run_phases(first: Snapshot | None, last: Snapshot) -> Phases | None:
    """The whole server's phases between two snapshots of a run (last minus first)."""
    return phases_minus(last.phases, first.phases if first is not None else None)
