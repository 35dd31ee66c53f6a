"""Waiting clients in the latency: the completed requests' histogram plus every request
still in flight or due and unsent, each at its current age (see loadgen.driver's docstring),
sampled with weights beyond a bound so that a huge backlog costs a bounded time."""

from __future__ import annotations

from collections.abc import Sequence

from .histogram import Histogram
from .recorder import add_weighted

WAITING_SAMPLE = 20_000  # waiting requests counted one by one; beyond, a weighted sample
TICKET_SAMPLE = 1_000  # points standing for the unsent tickets of an open loop


def waiting_histogram(
    latency: Histogram, intended: list[float], tickets: Sequence[float], now: float
) -> tuple[Histogram, float | None, int]:
    """(`latency` plus the waiting at their ages, the oldest in-flight age in ms or None,
    requests in flight): `intended` are the in-flight requests' intended send times,
    `tickets` the due ones not yet sent (oldest first)."""
    h = Histogram()
    src = latency
    h.counts = src.counts.copy()
    h.count, h.max_us, h.min_us, h.sum_us = src.count, src.max_us, src.min_us, src.sum_us
    n = len(intended)
    step = -(-n // WAITING_SAMPLE) if n else 1  # ceil: at most WAITING_SAMPLE points
    points = intended[::step]
    for k, t in enumerate(points):
        weight = step if k < len(points) - 1 else n - step * k  # the weights sum to n
        add_weighted(h, int((now - t) * 1e6), weight)
    nt = len(tickets)
    if nt:
        first, last = tickets[0], tickets[-1]
        spots = min(nt, TICKET_SAMPLE)
        for k in range(spots):
            t = first + (last - first) * (k / (spots - 1) if spots > 1 else 0.0)
            add_weighted(h, int((now - t) * 1e6), nt // spots + (1 if k < nt % spots else 0))
    oldest = (now - min(intended)) * 1000.0 if intended else None
    return h, oldest, n
