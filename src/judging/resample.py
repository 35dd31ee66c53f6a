"""Resampling over windows: a permutation test and a bootstrap interval for the difference
of a figure between two recordings, and Holm's correction over many figures.

A figure is a function of its windows' sums (requests / seconds, a histogram's p99, the
top worker's share of accepts...), so resampling is a weighted sum: a weight matrix M of
(draws x windows) times each part (windows x columns), then the figure, vectorised over
the draws. numpy, because the test takes up to 20,000 draws of 20-240 windows of up to 200
histogram buckets, and pure Python was about 200x slower (bench/README.md,
bench_verdict.py); a comparison takes ten such batches per histogram.

- permutation test (the p-value): the two recordings' windows pooled, split again at
  random into groups of the same sizes; p = (1 + splits at least as far apart as the
  recordings) / (1 + splits). Exact when windows are exchangeable (no difference), which
  the windows' length is chosen for (judging.windows). Workers are pooled by rank (the
  caller's): a split's top share is then its busiest rank's. Draws stop early once a
  figure has SETTLED splits that far apart: its p is then above 0.004 or so.
- bootstrap (the interval): each recording's windows drawn with replacement, the figure
  of each draw, the difference's 2.5th and 97.5th percentiles (a block bootstrap: the
  windows are the blocks).
- Holm: p-values adjusted for the number of figures compared, so that the chance of any
  false difference among them stays at most alpha.

Draws come from a seeded generator: the same two recordings give the same verdict.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# One BLAS thread, set before numpy loads OpenBLAS: these products are small, and its
# threads spin against the machine's other work (a 2,000 x 80 by 80 x 4 product took 15 ms
# with them on a busy 2-core host, 0.7 ms with one). A setting the user made is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

__all__ = ["np"]  # the numpy loaded with one BLAS thread, for the modules beside it

# part -> (windows,) or (windows, columns); "*_max": maxima; "*_mid": a constant (columns,)
Parts = Mapping[str, np.ndarray]
Stat = Callable[[Mapping[str, np.ndarray]], np.ndarray]  # sums (draws, ...) -> (draws,)

DRAWS = 20_000  # permutations: Holm over ~15 figures can then reach p < 0.001
BOOT = 2_000  # bootstrap draws for a 95% interval
SETTLED = 100  # splits as far apart as observed after which a figure's draws stop
SEED = 20260  # the same recordings give the same p-values and intervals
CELLS = 50_000_000  # draws x windows x columns per batch (~400 MB of float64 at most)


@dataclass(frozen=True)
class Test:
    """A figure's difference (after - before, on its scale) and its evidence."""

    observed: float  # nan: the figure is undefined on a side
    p: float  # permutation p-value, two-sided; 1.0 when untestable
    draws: int  # splits drawn that gave the figure on both sides
    degenerate: bool  # every split gave the same difference: nothing can be told apart


def sums(
    parts: Parts,
    weights: np.ndarray,
    names: Sequence[str],
    *,
    binary: bool = False,
) -> dict[str, np.ndarray]:
    """Each named part summed over the windows with `weights` (draws x windows; `binary`:
    all 0 or 1); a part named *_max takes the maximum over the windows drawn instead, *_mid
    is passed as it is."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        x = parts[name]
        if name.endswith("_mid"):
            out[name] = x
        elif name.endswith("_max"):  # (x >= 0: a window not drawn counts as 0)
            drawn = weights if binary else weights > 0  # (a product: 7x faster than where)
            out[name] = (drawn * x).max(axis=1)
        else:
            out[name] = weights @ x
    return out


def complement(
    parts: Parts, in_a: np.ndarray, sa: Mapping[str, np.ndarray], names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The sums over the windows NOT drawn in `in_a` (0/1), from sa: one matrix product
    fewer per part (maxima and constants are taken again)."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        x = parts[name]
        if name.endswith(("_max", "_mid")):
            out.update(sums(parts, 1.0 - in_a, [name], binary=True))
        else:
            out[name] = x.sum(axis=0) - sa[name]
    return out


def _diff(after: np.ndarray, before: np.ndarray, log: bool) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if log:
            ok = (after > 0) & (before > 0)
            logs: np.ndarray = np.where(
                ok, np.log(np.where(ok, after, 1.0) / np.where(ok, before, 1.0)), np.nan
            )
            return logs
        diff: np.ndarray = after - before
        return diff


def windows_of(parts: Parts) -> int:
    return len(next(v for k, v in parts.items() if not k.endswith("_mid")))


def observed(stat: Stat, parts: Parts, names: Sequence[str]) -> float:
    """The figure over all of a recording's windows."""
    w = windows_of(parts)
    return float(stat(sums(parts, np.ones((1, w)), names))[0])


def permutation(
    before: Parts,
    after: Parts,
    stats: Sequence[tuple[Stat, Sequence[str], bool]],
    *,
    draws: int = DRAWS,
    rng: np.random.Generator | None = None,
) -> list[Test]:
    """One Test per (stat, the parts it reads, log scale?)."""
    rng = rng or np.random.default_rng(SEED)
    wa, wb = windows_of(before), windows_of(after)
    w = wa + wb
    pooled = {
        k: before[k] if k.endswith("_mid") else np.concatenate([before[k], after[k]])
        for k in before
    }
    obs = [
        float(_diff(np.array([observed(f, after, n)]), np.array([observed(f, before, n)]), lg)[0])
        for f, n, lg in stats
    ]
    exceed = [0] * len(stats)
    valid = [0] * len(stats)
    spread = [False] * len(stats)
    active = [np.isfinite(o) for o in obs]
    width = max(1, sum(int(np.prod(pooled[k].shape[1:])) for k in pooled if k[-4:] != "_mid"))
    batch = int(max(100, min(2_000, CELLS // (w * width))))
    done = 0
    while done < draws and any(active):
        m = min(batch, draws - done)
        # wa windows drawn at random for each split: the wa smallest of uniform keys
        chosen = np.argpartition(rng.random((m, w)), wa - 1, axis=1)[:, :wa]
        in_a = np.zeros((m, w))
        np.put_along_axis(in_a, chosen, 1.0, axis=1)
        names = sorted({n for (_, ns, _), on in zip(stats, active, strict=True) if on for n in ns})
        sa = sums(pooled, in_a, names, binary=True)
        sb = complement(pooled, in_a, sa, names)
        for i, (f, _, lg) in enumerate(stats):
            if not active[i]:
                continue
            d = _diff(f(sb), f(sa), lg)
            ok = np.isfinite(d)
            valid[i] += int(ok.sum())
            tol = 1e-9 * max(1.0, abs(obs[i]))
            exceed[i] += int((np.abs(d[ok]) >= abs(obs[i]) - tol).sum())
            spread[i] = spread[i] or bool(ok.any() and np.ptp(d[ok]) > tol)
            if exceed[i] >= SETTLED:
                active[i] = False
        done += m
    out = []
    for i, o in enumerate(obs):
        if not np.isfinite(o) or not valid[i]:
            out.append(Test(o, 1.0, valid[i], degenerate=False))
            continue
        degenerate = not spread[i] and o == 0.0
        out.append(Test(o, (1 + exceed[i]) / (1 + valid[i]), valid[i], degenerate))
    return out


def bootstrap(
    before: Parts,
    after: Parts,
    stats: Sequence[tuple[Stat, Sequence[str], bool]],
    *,
    draws: int = BOOT,
    rng: np.random.Generator | None = None,
) -> list[tuple[float, float] | None]:
    """The 95% interval of each figure's difference (after - before, on its scale), each
    recording's windows drawn with replacement; None when too few draws define it."""
    rng = rng or np.random.default_rng(SEED + 1)
    wa, wb = windows_of(before), windows_of(after)
    ma = rng.multinomial(wa, np.full(wa, 1.0 / wa), size=draws).astype(float)
    mb = rng.multinomial(wb, np.full(wb, 1.0 / wb), size=draws).astype(float)
    names = sorted({n for _, ns, _ in stats for n in ns})
    sa, sb = sums(before, ma, names), sums(after, mb, names)
    out: list[tuple[float, float] | None] = []
    for f, _, lg in stats:
        d = _diff(f(sb), f(sa), lg)
        d = d[np.isfinite(d)]
        if len(d) < draws // 2:
            out.append(None)
            continue
        lo, hi = np.percentile(d, [2.5, 97.5])
        out.append((float(lo), float(hi)))
    return out


def least_p(wa: int, wb: int, draws: int = DRAWS) -> float:
    """The smallest p-value the permutation test can give for wa and wb windows: a figure
    it cannot take below alpha is not tested (it would only weaken Holm's correction)."""
    splits = math.comb(wa + wb, wa)
    return max(min(1.0, 2.0 / splits), 1.0 / (1 + draws))


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


# -- figures of window sums -------------------------------------------------------------------


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def quantile_ms(hist: np.ndarray, maxes: np.ndarray, q: float, mid_us: np.ndarray) -> np.ndarray:
    """Each row's q-th quantile in ms, as LogHist.quantile_ms reads it (the bucket's
    midpoint, capped by the maximum); nan for an empty row."""
    total = hist.sum(axis=1)
    if hist.shape[1] == 0:  # no bucket in use on either side
        return np.full(len(total), np.nan)
    rank = np.clip(np.floor(q * total + 0.999999), 1, np.maximum(total, 1))
    cum = hist.cumsum(axis=1)
    idx = np.minimum((cum < rank[:, None]).sum(axis=1), hist.shape[1] - 1)
    value = np.minimum(mid_us[idx], np.where(maxes > 0, maxes, np.inf)) / 1000.0
    return np.where(total > 0, value, np.nan)


def top_share(x: np.ndarray) -> np.ndarray:
    return ratio(x.max(axis=1), x.sum(axis=1))


def jain(x: np.ndarray) -> np.ndarray:
    """(sum x)^2 / (n sum x^2) over the columns (the workers)."""
    return ratio(x.sum(axis=1) ** 2, x.shape[1] * (x**2).sum(axis=1))
