"""The counters of one load run, on the hot path: what the driver and the engines record.

Apart from the driver so that the engines (which record connect times and opened
connections) and the driver (which runs them) do not import each other.
"""

from __future__ import annotations

from .histogram import HALF, MAX_US, SUB, Histogram
from .stats import ERROR_KINDS


class Recorder:
    """Counters of one run, updated on the hot path by the driver and the engines."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.latency = Histogram()
        self.connect = Histogram()
        self.status: dict[int, int] = {}
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.requests = 0
        self.sent = 0
        self.in_flight = 0
        self.open = 0
        self.series = [0] * 64

    def ok(self, status: int, intended: float, now: float) -> None:
        self.requests += 1
        st = self.status
        st[status] = st.get(status, 0) + 1
        # Histogram.record_us, inlined: this runs once per request
        us = int((now - intended) * 1e6)
        h = self.latency
        if us < SUB:
            if us < 0:
                us = 0
            h.counts[us] += 1
        else:
            v = us if us <= MAX_US else MAX_US
            shift = v.bit_length() - 8
            h.counts[SUB - HALF + (shift - 1) * HALF + (v >> shift)] += 1
        if us > h.max_us:
            h.max_us = us
        if h.count == 0 or us < h.min_us:
            h.min_us = us
        h.count += 1
        h.sum_us += us
        sec = int(now - self.t0)
        try:
            self.series[sec] += 1
        except IndexError:
            self.series.extend([0] * (sec + 64 - len(self.series)))
            self.series[sec] += 1

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


def add_weighted(h: Histogram, us: int, n: int) -> None:
    """Histogram.record_us with a weight (n values of `us`)."""
    if us < 0:
        us = 0
    if us < SUB:
        h.counts[us] += n
    else:
        v = us if us <= MAX_US else MAX_US
        shift = v.bit_length() - 8
        h.counts[SUB - HALF + (shift - 1) * HALF + (v >> shift)] += n
    if us > h.max_us:
        h.max_us = us
    if h.count == 0 or us < h.min_us:
        h.min_us = us
    h.count += n
    h.sum_us += us * n
