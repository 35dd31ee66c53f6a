"""What the request phases add to `Analyser.annotate` per sample (issue 16): the window's
phases per worker and overall (analysis.PhaseWindow) and the rules citing them.

    .venv/bin/python bench/bench_phase_window.py [--workers 250] [--samples 40]

Synthetic snapshots (no server): each worker's three cumulative histograms hold ~55
non-empty buckets (a lognormal spread over 1 us .. 100 ms, as a long-running worker's
do); `--moving` is the fraction of workers whose counts move each sample (1.0: a storm
touching every worker every 250 ms, the worst case; idle workers keep the same Phases
objects, as the supervisor source hands them). The same snapshots without phases, in the
same run, are the reference: the figure is the difference, in ms per sample and in % of
one core at 4 Hz. CPU time of this thread (time.thread_time), median of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import synthetic
from judging.analyser import Analyser
from plumbing.loghist import NBUCKETS, LogHist, index_of
from values.phases import Phases
from values.snapshot import Snapshot


def _hist(rng: random.Random, n: int) -> LogHist:
    dense = [0] * NBUCKETS
    for _ in range(n):
        dense[index_of(int(rng.lognormvariate(6.0, 1.6)))] += 1
    return LogHist.from_counts(dense, n * 500, 100_000)


def _series(
    workers: int, samples: int, moving: float, per_sample: int, seed: int = 1
) -> list[Snapshot]:
    rng = random.Random(seed)
    base = synthetic.snapshot(workers=workers)
    hists = {w.key: _hist(rng, 2000) for w in base.workers}
    cur = {k: Phases(h, h, h) for k, h in hists.items()}
    out = []
    for k in range(samples):
        ws = []
        for w in base.workers:
            if rng.random() < moving:
                hists[w.key] = hists[w.key].plus(_hist(rng, per_sample))
                h = hists[w.key]
                cur[w.key] = Phases(h, h, h)
            ws.append(dataclasses.replace(w, phases=cur[w.key]))
        out.append(
            dataclasses.replace(
                base, seq=k, time=1000.0 + k * 0.25, workers=tuple(ws), phases=cur[ws[0].key]
            )
        )
    return out


def _cost(snaps: list[Snapshot]) -> float:
    analyser = Analyser()
    t0 = time.thread_time()
    for s in snaps:
        analyser.annotate(s)
    return (time.thread_time() - t0) / len(snaps) * 1000.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=250)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--moving", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument(
        "--per-sample", type=int, default=2, help="requests per moving worker per sample (2)"
    )
    a = p.parse_args()
    with_phases = _series(a.workers, a.samples, a.moving, a.per_sample)
    without = [
        dataclasses.replace(
            s, phases=None, workers=tuple(dataclasses.replace(w, phases=None) for w in s.workers)
        )
        for s in with_phases
    ]
    w, wo = [], []
    for _ in range(a.repeat):
        wo.append(_cost(without))
        w.append(_cost(with_phases))
    mw, mwo = statistics.median(w), statistics.median(wo)
    extra = mw - mwo
    print(
        f"{a.workers} workers, {a.moving:.0%} moving, {a.per_sample} each: annotate "
        f"{mwo:.2f} ms/sample without phases, {mw:.2f} ms with: +{extra:.2f} ms/sample "
        f"(+{extra * 4 / 10:.2f}% of a core at 4 Hz)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
