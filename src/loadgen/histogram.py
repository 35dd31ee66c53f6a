"""Log-linear latency histogram, HdrHistogram style: 1 us to 60 s at <= 0.4% relative error.

Hand-written rather than the `hdrhistogram` package: recording sits on the generator's
hot path and here it is one `bit_length`, a shift and a list increment (the package's
`record_value` does several Python calls and bound checks per value); the counts must also
cross a process pipe in a compact sparse form.

Layout (values in whole microseconds): values below 256 get a bucket each (exact); above,
each power-of-two range [2^k, 2^(k+1)) is split into 128 equal buckets, so a bucket is at
most 1/128 of its lowest value wide. A percentile reports its bucket's midpoint, which is
within 1/256 (0.39%) of every value in the bucket; `max` is kept exactly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate, compress
from typing import Any

from plumbing import loghist
from plumbing.loghist import LogHist

from .stats import Percentiles

SUB = 256  # exact buckets below this many microseconds
HALF = 128  # buckets per power of two above
MAX_US = 60_000_000  # 60 s; longer values are counted in the last bucket


def index_of(us: int) -> int:
    """Bucket index of a value in microseconds (>= 0)."""
    if us < SUB:
        return us
    if us > MAX_US:
        us = MAX_US
    shift = us.bit_length() - 8
    return SUB + (shift - 1) * HALF + (us >> shift) - HALF


NBUCKETS = index_of(MAX_US) + 1


def bucket_bounds(i: int) -> tuple[int, int]:
    """[low, high) of bucket i, in microseconds."""
    if i < SUB:
        return i, i + 1
    j = i - SUB
    shift = j // HALF + 1
    low = (HALF + j % HALF) << shift
    return low, low + (1 << shift)


# each bucket's plumbing.loghist bucket (Histogram.to_loghist)
_TO_LOGHIST = [loghist.index_of(bucket_bounds(i)[0]) for i in range(NBUCKETS)]


class Histogram:
    """Counts of values; `record` takes seconds, `record_us` whole microseconds."""

    __slots__ = ("count", "counts", "max_us", "min_us", "sum_us")

    def __init__(self) -> None:
        self.counts = [0] * NBUCKETS
        self.count = 0
        self.max_us = 0
        self.min_us = 0
        self.sum_us = 0

    def record(self, seconds: float) -> None:
        self.record_us(int(seconds * 1e6))

    def record_us(self, us: int) -> None:
        if us < SUB:
            if us < 0:
                us = 0
            self.counts[us] += 1
        else:
            v = us if us <= MAX_US else MAX_US
            shift = v.bit_length() - 8
            self.counts[SUB - HALF + (shift - 1) * HALF + (v >> shift)] += 1
        if us > self.max_us:
            self.max_us = us
        if self.count == 0 or us < self.min_us:
            self.min_us = us
        self.count += 1
        self.sum_us += us

    def value_at(self, q: float, cumulative: list[int] | None = None) -> float:
        """The q-th quantile (0..1) in milliseconds; 0.0 when empty."""
        if not self.count:
            return 0.0
        cum = cumulative if cumulative is not None else list(accumulate(self.counts))
        rank = max(1, min(self.count, int(q * self.count + 0.999999)))  # ceil, >= 1
        i = bisect_left(cum, rank)
        low, high = bucket_bounds(i)
        mid = low if high - low == 1 else (low + high) / 2
        return min(mid, self.max_us) / 1000.0

    def percentiles(self) -> Percentiles:
        if not self.count:
            return Percentiles()
        cum = list(accumulate(self.counts))
        return Percentiles(
            p50=self.value_at(0.50, cum),
            p90=self.value_at(0.90, cum),
            p99=self.value_at(0.99, cum),
            p999=self.value_at(0.999, cum),
            max=self.max_us / 1000.0,
            count=self.count,
        )

    @property
    def mean_ms(self) -> float:
        return self.sum_us / self.count / 1000.0 if self.count else 0.0

    def count_at_least(self, ms: float) -> int:
        """How many values are >= ms (to bucket precision)."""
        start = index_of(int(ms * 1000))
        return sum(self.counts[start:])

    def by_second(self, upto: int = 15) -> tuple[int, ...]:
        """Counts of values nearest to 1 s, 2 s, ... `upto` s (the last takes all above):
        where SYN retransmits put connect times. Empty when no value reaches 0.5 s."""
        out = [0] * upto
        for i in range(index_of(500_000), NBUCKETS):
            c = self.counts[i]
            if c:
                low, high = bucket_bounds(i)
                k = min(upto, max(1, round((low + high) / 2_000_000)))
                out[k - 1] += c
        return tuple(out) if any(out) else ()

    def buckets(self) -> Iterator[tuple[float, float, int]]:
        """(low_ms, high_ms, count) of every non-empty bucket, in order."""
        for i, c in enumerate(self.counts):
            if c:
                low, high = bucket_bounds(i)
                yield low / 1000.0, high / 1000.0, c

    def to_loghist(self) -> LogHist:
        """The same values in plumbing.loghist's coarser buckets (what snapshots carry),
        exactly: each of these buckets lies inside one of LogHist's (128 per power of two
        split its 8; below 256 us both are exact or nested), so no value changes bucket
        but by that rounding. ~10 us (170 non-empty buckets), as long as `percentiles`."""
        if not self.count:
            return LogHist()
        out: dict[int, int] = {}
        for j, c in zip(
            compress(_TO_LOGHIST, self.counts), compress(self.counts, self.counts), strict=True
        ):
            out[j] = out.get(j, 0) + c
        return LogHist(self.count, self.sum_us, self.max_us, tuple(sorted(out.items())))

    # -- compact form for pipes and JSON -----------------------------------------------
    def to_dict(self) -> dict[str, object]:
        return {
            "count": self.count,
            "max_us": self.max_us,
            "min_us": self.min_us,
            "sum_us": self.sum_us,
            "buckets": {str(i): c for i, c in enumerate(self.counts) if c},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        h = cls()
        for i, c in d["buckets"].items():
            h.counts[int(i)] = int(c)
        h.count = int(d["count"])
        h.max_us = int(d["max_us"])
        h.min_us = int(d["min_us"])
        h.sum_us = int(d["sum_us"])
        return h

    def __reduce__(self) -> tuple[object, ...]:
        return (Histogram.from_dict, (self.to_dict(),))
