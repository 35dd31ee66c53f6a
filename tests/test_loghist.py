"""plumbing.loghist against the exact figures of the same values."""

from __future__ import annotations

import random

from plumbing.loghist import MAX_US, NBUCKETS, LogHist, bucket_bounds, index_of, merge


def _hist(values: list[int]) -> LogHist:
    dense = [0] * NBUCKETS
    for v in values:
        dense[index_of(v)] += 1
    return LogHist.from_counts(dense, sum(values), max(values, default=0))


def test_every_value_falls_in_its_bucket() -> None:
    for us in [*range(0, 300), 1000, 4095, 4096, 250_000, 10**7, MAX_US]:
        low, high = bucket_bounds(index_of(us))
        assert low <= us < high
        assert high - low <= max(1, low / 8)
    assert index_of(-5) == 0
    assert index_of(MAX_US * 10) == NBUCKETS - 1


def test_quantiles_within_bucket_precision() -> None:
    rng = random.Random(7)
    values = sorted(int(rng.lognormvariate(8, 2)) for _ in range(20_000))
    h = _hist(values)
    assert h.count == len(values) and h.max_us == values[-1]
    for q in (0.5, 0.9, 0.99):
        exact = values[int(q * len(values) + 0.999999) - 1] / 1000
        got = h.quantile_ms(q)
        assert got is not None and abs(got - exact) <= max(0.001, exact * 0.0625)


def test_window_and_merge() -> None:
    first, later = [10, 20, 30], [250_000, 260_000]
    older, newer = _hist(first), _hist(first + later)
    window = newer.minus(older)
    assert window.count == 2 and window.sum_us == sum(later)
    assert 250 <= (window.quantile_ms(0.5) or 0) <= 265
    assert newer.minus(newer) == LogHist()
    assert newer.minus(_hist(first * 3)) == newer  # went backwards: a new worker
    both = merge([older, _hist(later)])
    assert both.count == newer.count and both.buckets == newer.buckets
    assert LogHist().quantile_ms(0.5) is None and LogHist().mean_ms is None
