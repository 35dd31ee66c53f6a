"""A small log-linear histogram of microseconds, for the request phases.

Writers (every worker, in its scoreboard slot) and readers (snapshot, analysis, JSON)
share this bucket scheme, so it lives on the lowest floor.

Hand-written, not `hdrhistogram`: a worker records three values per request into shared
memory with no allocation (`index_of` is one `bit_length` and a shift), and a slot must
stay small because the sampler reads every slot several times a second: 208 buckets
cover 0 us to 134 s, 8 per power of two, so a bucket is at most 1/8 of its low end wide
and a quantile (its bucket's midpoint) is within 6.25% of every value in the bucket.
(loadgen.histogram keeps 2,600 buckets for the client's 0.4%; 1,024 slots x 3 phases of
those would be 32 MB to read.) Sums and maxima are exact.

Values: whole microseconds, >= 0; longer than MAX_US counts in the last bucket.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, compress

SUB_BITS = 3
PER_OCTAVE = 1 << SUB_BITS  # 8 buckets per power of two
EXACT = 2 * PER_OCTAVE  # values below 16 us have a bucket each
MAX_US = (1 << 27) - 1  # 134 s


def index_of(us: int) -> int:
    """Bucket index of `us` microseconds (negative counts as 0, huge as MAX_US)."""
    if us < EXACT:
        return us if us > 0 else 0
    if us > MAX_US:
        us = MAX_US
    shift = us.bit_length() - SUB_BITS - 1
    return shift * PER_OCTAVE + (us >> shift)


NBUCKETS = index_of(MAX_US) + 1  # 200
_INDEX = range(NBUCKETS)


def bucket_bounds(i: int) -> tuple[int, int]:
    """[low, high) of bucket i, in microseconds."""
    if i < EXACT:
        return i, i + 1
    shift = i // PER_OCTAVE - 1
    low = (i % PER_OCTAVE + PER_OCTAVE) << shift
    return low, low + (1 << shift)


@dataclass(frozen=True, slots=True)
class LogHist:
    """An immutable histogram: exact count, sum and max; sparse bucket counts.

    `buckets` holds (index, count) of the non-empty buckets, ascending by index.
    A LogHist that is the difference of two cumulative ones (`minus`) has an estimated
    `max_us`: the top of its highest non-empty bucket, capped by the newer maximum.
    """

    count: int = 0
    sum_us: int = 0
    max_us: int = 0
    buckets: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_counts(cls, counts: Sequence[int], sum_us: int, max_us: int) -> LogHist:
        """From a dense list of NBUCKETS counts (what a scoreboard slot holds). C-speed
        `compress` over the buckets: the sampler builds one per changed slot and phase
        (~10 us, where a Python loop over the 200 buckets took several times that)."""
        sparse = zip(compress(_INDEX, counts), compress(counts, counts), strict=True)
        return cls(sum(counts), sum_us, max_us, tuple(sparse))

    def dense(self) -> list[int]:
        out = [0] * NBUCKETS
        for i, c in self.buckets:
            out[i] += c
        return out

    @property
    def mean_ms(self) -> float | None:
        return self.sum_us / self.count / 1000.0 if self.count else None

    @property
    def max_ms(self) -> float | None:
        return self.max_us / 1000.0 if self.count else None

    def quantile_ms(self, q: float) -> float | None:
        """The q-th quantile (0..1) in milliseconds, None when empty."""
        if not self.count or not self.buckets:
            return None
        cum = list(accumulate(c for _, c in self.buckets))
        rank = max(1, min(cum[-1], int(q * cum[-1] + 0.999999)))  # ceil, >= 1
        i = self.buckets[bisect_left(cum, rank)][0]
        low, high = bucket_bounds(i)
        mid = low if high - low == 1 else (low + high) / 2
        return min(mid, self.max_us) / 1000.0

    def plus(self, other: LogHist) -> LogHist:
        if not other.count:
            return self
        if not self.count:
            return other
        merged: dict[int, int] = dict(self.buckets)
        for i, c in other.buckets:
            merged[i] = merged.get(i, 0) + c
        return LogHist(
            self.count + other.count,
            self.sum_us + other.sum_us,
            max(self.max_us, other.max_us),
            tuple(sorted(merged.items())),
        )

    def minus(self, older: LogHist) -> LogHist:
        """What was recorded after `older` (a previous reading of the same cumulative
        histogram). A reading that went backwards (a new worker in the slot) is `self`."""
        if not older.count:
            return self
        if older.count > self.count:
            return self
        old = dict(older.buckets)
        left = tuple((i, c - old.get(i, 0)) for i, c in self.buckets if c > old.get(i, 0))
        if not left:
            return LogHist()
        top = bucket_bounds(left[-1][0])[1] - 1
        return LogHist(
            self.count - older.count,
            max(0, self.sum_us - older.sum_us),
            min(self.max_us, top),
            left,
        )


EMPTY = LogHist()


def merge(hists: Sequence[LogHist]) -> LogHist:
    """The sum of several histograms (e.g. every worker's)."""
    dense = [0] * NBUCKETS
    count = sum_us = max_us = 0
    for h in hists:
        if not h.count:
            continue
        count += h.count
        sum_us += h.sum_us
        max_us = max(max_us, h.max_us)
        for i, c in h.buckets:
            dense[i] += c
    if not count:
        return EMPTY
    return LogHist.from_counts(dense, sum_us, max_us)
