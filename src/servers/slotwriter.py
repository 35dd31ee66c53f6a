"""What a worker writes its own scoreboard slot through (no locks: it is the only writer),
the hot path of every request; the slot's layout is servers.scoreboard's."""

from __future__ import annotations

import ctypes
import time

from plumbing.loghist import MAX_US, NBUCKETS, SUB_BITS

from . import inflight

# the phase area: per slot, PHASES histograms of HIST_WORDS uint64 each
QUEUE, SERVER, SERVICE = 0, 1, 2
PHASES = 3
HIST_WORDS = 3 + NBUCKETS  # count, sum_us, max_us, buckets
_SMALL = 2 * (1 << SUB_BITS)  # loghist.index_of, inlined below: its exact buckets
_TOP = MAX_US


def _put(m: memoryview, base: int, us: int) -> None:
    """Add `us` to the histogram at word `base` of `m` (count, sum, max, buckets): the
    hot path of every request, so loghist.index_of is inlined (one call less: ~0.1 us)."""
    if us < _SMALL:
        i = us if us > 0 else 0
        if us < 0:
            us = 0
    else:
        if us > _TOP:
            us = _TOP
        shift = us.bit_length() - SUB_BITS - 1
        i = (shift << SUB_BITS) + (us >> shift)
    m[base + 3 + i] += 1
    m[base] += 1
    m[base + 1] += us
    if us > m[base + 2]:
        m[base + 2] = us


class SlotWriter:
    """What a worker uses to keep its own slot up to date (no locks: it is the only writer).

    `phases` is the slot's phase area (a memoryview of uint64), None when the server runs
    with the accounting off (`serve --no-phases`): callers test it before reading clocks.
    `req` is its current request and client (servers.inflight).
    """

    __slots__ = ("phases", "req", "s")

    def __init__(
        self, slot: ctypes.Structure, phases: memoryview | None, req: inflight.RequestRecord
    ) -> None:
        self.s = slot
        self.phases = phases
        self.req = req

    def record(self, phase: int, us: int) -> None:
        """One value (microseconds) into histogram `phase` (QUEUE, SERVER or SERVICE).
        The bucket is written before the count, so a reader never sees a count that its
        buckets lack. See bench/bench_phases.py for its cost."""
        m = self.phases
        if m is not None:
            _put(m, phase * HIST_WORDS, us)

    def queued(self, us: int) -> None:
        """A connection's accept-queue wait (`Acceptor.queue_us`; -1, unknown, is left out)."""
        if us >= 0:
            self.record(QUEUE, us)

    def request(self, had_ns: int, start_ns: int, end_ns: int) -> None:
        """A request's in-server wait (had -> handler start) and service (start -> the
        response handed to the kernel); times are time.monotonic_ns()."""
        m = self.phases
        if m is not None:
            _put(m, SERVER * HIST_WORDS, (start_ns - had_ns) // 1000)
            _put(m, SERVICE * HIST_WORDS, (end_ns - start_ns) // 1000)

    def state(self, state: int) -> None:  # a servers.slots.State
        s = self.s
        if s.state != state:
            s.state = state
            s.last_change = time.monotonic()

    def accepted(self) -> None:
        s = self.s
        s.accepted += 1
        s.open += 1

    def closed(self) -> None:
        self.s.open -= 1

    def took(self) -> None:
        """An open connection accepted elsewhere is now held here (event's hand-offs)."""
        self.s.open += 1

    def gave(self) -> None:
        """An open connection held here was handed to another slot (it is not closed)."""
        self.s.open -= 1

    def served(self, nbytes: int) -> None:
        s = self.s
        s.requests += 1
        s.bytes_sent += nbytes
