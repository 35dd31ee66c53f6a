"""What a source reads in one go, and the one counter type that turns totals into figures
over the sampling interval.

A source (`SupervisorSource`, `AttachSource`) reads cumulative figures: CPU seconds,
accepts and requests since a worker started, kernel counters since boot. The interval
figures (CPU %, accepts in the last 250 ms) are differences from the previous sample, kept
per identity by a `Counter`: per worker (slot, pid/tid, generation), so a respawned worker
starts afresh instead of jumping by minus its predecessor's total; per root pid for the
master; one key for the host and kernel counters.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from values.phases import Phases
from values.server_info import ModelInfo
from values.snapshot import ListenerSample, WorkerSample

N = TypeVar("N", int, float)
T = TypeVar("T")


@dataclass(slots=True)
class Reading:
    """What a source read in one go; the sampler adds the interval figures of the whole."""

    model: ModelInfo  # without the CPU-derived fields
    master_cpu_seconds: float | None
    workers: list[WorkerSample]  # their interval figures filled in through WorkerDeltas
    listeners: list[ListenerSample]
    phases: Phases | None = None  # the whole server's request phases, cumulative


class Counter(Generic[N]):
    """Previous values per key. One round per sample: `begin()`, `delta(key, value)` for
    each figure, `end()`. `delta` is value minus the key's value in the previous round
    (never below 0: counters only grow, and a reset one starts afresh), None without a
    previous value; keys not given in a round are forgotten at its end, so a worker that
    went away and came back (a reused pid) is new."""

    __slots__ = ("_next", "_prev")

    def __init__(self) -> None:
        self._prev: dict[Hashable, N] = {}
        self._next: dict[Hashable, N] = {}

    def begin(self) -> None:
        self._next = {}

    def end(self) -> None:
        self._prev = self._next

    def delta(self, key: Hashable, value: N | None, *, since_start: bool = False) -> N | None:
        """`since_start`: a key without a previous value counts from zero (a worker spawned
        since the last sample accepted its `value` in this interval)."""
        if value is None:
            return None
        self._next[key] = value
        before = self._prev.get(key)
        if before is None:
            return value if since_start else None
        return max(value - before, 0)


class WorkerDeltas:
    """Interval figures per worker identity: the sampler begins a round with the interval,
    sources call it once per worker with its cumulative figures.

    Three `Counter`s in one: one dict of (cpu, accepts, requests) per key, each figure
    kept or forgotten on its own as a Counter would (None: no previous value). Called
    once per worker per sample, it was a third of the sampler's Python time as three
    Counters (bench/bench_sampler.py)."""

    __slots__ = ("_next", "_prev", "interval_s")

    def __init__(self) -> None:
        self._prev: dict[Hashable, tuple[float | None, int | None, int | None]] = {}
        self._next: dict[Hashable, tuple[float | None, int | None, int | None]] = {}
        self.interval_s: float | None = None

    def begin(self, interval_s: float | None) -> None:
        self.interval_s = interval_s
        self._next = {}

    def end(self) -> None:
        self._prev = self._next

    def __call__(
        self,
        key: Hashable,
        alive: bool,
        cpu_s: float | None,
        accepted: int | None,
        requests: int | None,
    ) -> tuple[float | None, int | None, int | None]:
        """(CPU % of one core, accepts, requests) in the interval; a worker new since the
        last sample (respawn, new thread) made its accepts and requests in it."""
        iv = self.interval_s
        self._next[key] = (cpu_s, accepted, requests)
        before = self._prev.get(key)
        if before is None:
            before = (None, None, None)
        c0, a0, r0 = before
        pct = None
        if cpu_s is not None and c0 is not None and iv:
            pct = (cpu_s - c0 if cpu_s > c0 else 0.0) / iv * 100.0
        new = alive and iv is not None  # the first sample has no interval to count in
        if accepted is None:
            acc = None
        elif a0 is None:
            acc = accepted if new else None
        else:
            acc = accepted - a0 if accepted > a0 else 0
        if requests is None:
            req = None
        elif r0 is None:
            req = requests if new else None
        else:
            req = requests - r0 if requests > r0 else 0
        return pct, acc, req


class ReadingSource(Protocol):
    """What measures a server: `read` once per sample, cumulative figures through `deltas`."""

    kind: str  # "supervisor" or "attach"

    def read(self, now: float, deltas: WorkerDeltas) -> Reading: ...
