"""The counters of one load run, on the hot path: what the driver and the engines record.

Apart from the driver so that the engines (which record connect times and opened
connections) and the driver (which runs them) do not import each other.
"""

from __future__ import annotations

from .histogram import HALF, MAX_US, SUB, Histogram
from .stats import ERROR_KINDS, ClientPhases


class Recorder:
    """Counters of one run, updated on the hot path by the driver and the engines."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.latency = Histogram()
        self.connect = Histogram()
        # the phases of completed requests (stats.ClientPhases), in microseconds
        self.p_wait = Histogram()
        self.p_connect = Histogram()
        self.p_ttfb = Histogram()
        self.p_read = Histogram()
        self.p_resume = Histogram()
        self.zeros = [0] * 5  # zero values not yet folded into the phase histograms
        self.status: dict[int, int] = {}
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.requests = 0
        self.sent = 0
        self.in_flight = 0
        self.open = 0
        self.series = [0] * 64

    def ok(
        self,
        status: int,
        intended: float,
        start: float,
        conn: float,
        first: float,
        last: float,
        now: float,
    ) -> None:
        """A completed request: its latency (now - intended) and its five phases
        (stats.ClientPhases), each a difference of the same whole-microsecond timestamps,
        so that they add up to the latency exactly.

        This runs once per request, so the histogram records are inlined, and the phases
        that are usually 0 (wait in a closed loop, connect on a reused connection, read of
        a response in one segment) cost one counter increment when they are: the zeros are
        folded into their histograms when read (`phase_hists`; cost: bench/README.md)."""
        # one function on purpose: once per request, its histogram records inlined
        self.requests += 1
        st = self.status
        st[status] = st.get(status, 0) + 1
        i_us = int(intended * 1e6)
        f_us = int(first * 1e6)
        l_us = int(last * 1e6)
        n_us = int(now * 1e6)
        # latency: Histogram.record_us, inlined
        us = n_us - i_us
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
        # the phases
        if start == intended:
            s_us = i_us
            self.zeros[0] += 1
        else:
            s_us = int(start * 1e6)
            _record(self.p_wait, s_us - i_us)
        if conn == start:
            c_us = s_us
            self.zeros[1] += 1
        else:
            c_us = int(conn * 1e6)
            _record(self.p_connect, c_us - s_us)
        us = f_us - c_us  # ttfb, inlined (never 0 in practice)
        h = self.p_ttfb
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
        h.count += 1
        h.sum_us += us
        if l_us == f_us:
            self.zeros[3] += 1
        else:
            _record(self.p_read, l_us - f_us)
        us = n_us - l_us  # resume, inlined
        h = self.p_resume
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
        h.count += 1
        h.sum_us += us
        sec = int(now - self.t0)
        try:
            self.series[sec] += 1
        except IndexError:
            self.series.extend([0] * (sec + 64 - len(self.series)))
            self.series[sec] += 1

    def phase_hists(self) -> tuple[Histogram, ...]:
        """The five phase histograms (stats.PHASE_NAMES order), with the zeros counted so
        far folded in. (Their min_us is not kept: nothing shows it.)"""
        hists = (self.p_wait, self.p_connect, self.p_ttfb, self.p_read, self.p_resume)
        for k, h in enumerate(hists):
            z = self.zeros[k]
            if z:
                self.zeros[k] = 0
                h.counts[0] += z
                h.count += z
        return hists

    def phases(self) -> ClientPhases:
        return ClientPhases(*(h.percentiles() for h in self.phase_hists()))

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


def _record(h: Histogram, us: int) -> None:
    """Histogram.record_us without min_us, for the phases' rarer non-zero values."""
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
    h.count += 1
    h.sum_us += us


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
