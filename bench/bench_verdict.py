"""How often `serverscope diff` finds a difference that is not there, and one that is.

    .venv/bin/python bench/bench_verdict.py [--pairs 200] [--samples 40] [--real 20]

Same-setup pairs: two synthetic recordings of one setup (synthetic.noisy with two
seeds: Poisson requests, multinomial accepts, lognormal latencies, Poisson queue depth) are
judged (judging.verdict.judge); a pair with any significant difference is a false one.
The verdict's level is family-wise (Holm over every figure at ALPHA = 0.01), so at most 1%
of pairs should show one. Also printed: how often each figure's raw permutation p was
below 0.05 (a calibrated test: about 5%), and how often a known difference was found
(power): a worker with 1.6x its share of accepts, latencies 1.25x longer.

`--real N` also runs N real same-setup pairs (the two `serverscope run` lines of
docs/fix-and-diff.md, one after the other) and counts the pairs with a difference, and
those whose only differences were timing figures left unjudged because the rest of the
machine's CPU differed (judging.figures.CONTEXT): synthetic pairs share one machine, real
ones do not.

Then the cost: one judgement's wall time, and the resampling's core (a batch of 2,000
weighted sums of 24 windows of 200 buckets) in numpy against pure Python, measured here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

for _d in ("src", "tests"):  # judging, and the synthetic recordings
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", _d))

import numpy as np  # noqa: E402

import synthetic  # noqa: E402
from judging import verdict, verdict_values, windows  # noqa: E402

SETUPS = {
    "even": {},
    "skewed": {"weights": [6, 1, 1, 1], "queue": 4.0},
    "slow": {"latency_ms": 40.0, "spread": 1.0, "rps": 300.0, "accepts_per_s": 50.0},
}


def rec(seed: int, samples: int, **kw: object) -> windows.Recording:
    return windows.read(synthetic.noisy(samples, seed=seed, **kw), f"seed{seed}")  # type: ignore[arg-type]


def same_setup(pairs: int, samples: int) -> None:
    print(f"same-setup pairs ({samples} samples each, alpha {verdict_values.ALPHA} family-wise):")
    for name, kw in SETUPS.items():
        false = 0
        raw05: Counter[str] = Counter()
        tested: Counter[str] = Counter()
        t0 = time.perf_counter()
        for i in range(pairs):
            v = verdict.judge(rec(2 * i, samples, **kw), rec(2 * i + 1, samples, **kw))
            false += bool(v.differences)
            for r in v.tested:
                tested[r.key] += 1
                raw05[r.key] += (r.p or 1.0) < 0.05
        spent = (time.perf_counter() - t0) / pairs
        print(
            f"  {name:7s} {false}/{pairs} pairs with a false difference ({false / pairs:.1%});"
            f" {spent:.2f} s a pair"
        )
        raw = ", ".join(f"{k} {raw05[k] / tested[k]:.0%}" for k in sorted(tested))
        print(f"          raw p < 0.05: {raw}")


def power(pairs: int, samples: int) -> None:
    cases = {
        "one worker 1.6x its share": ({}, {"weights": [1.6, 0.8, 0.8, 0.8]}, "accept_top_share"),
        "latency x1.25": ({}, {"latency_ms": 6.25}, "latency_p50"),
    }
    print(f"known differences ({samples} samples each):")
    for name, (kb, ka, key) in cases.items():
        found = 0
        for i in range(pairs):
            v = verdict.judge(
                rec(10_000 + 2 * i, samples, **kb), rec(10_001 + 2 * i, samples, **ka)
            )
            row = v.row(key)
            found += bool(row and row.significant)
        print(f"  {name}: {key} found in {found}/{pairs} pairs")


def cost() -> None:
    rng = np.random.default_rng(1)
    weights = (rng.random((2000, 24)) < 0.5).astype(float)
    parts = rng.poisson(3.0, (24, 200)).astype(float)
    t0 = time.perf_counter()
    for _ in range(10):
        weights @ parts
    numpy_s = (time.perf_counter() - t0) / 10
    w_rows, p_cols = weights.tolist(), parts.T.tolist()
    t0 = time.perf_counter()
    for row in w_rows[:200]:  # a tenth, scaled
        [sum(a * b for a, b in zip(row, col, strict=True)) for col in p_cols]
    python_s = (time.perf_counter() - t0) * 10
    print(
        f"resampling core, 2,000 draws x 24 windows x 200 buckets: numpy {numpy_s * 1e3:.1f} ms, "
        f"pure Python {python_s * 1e3:.0f} ms ({python_s / numpy_s:.0f}x)"
    )
    a, b = rec(1, 40), rec(2, 40)
    t0 = time.perf_counter()
    verdict.judge(a, b)
    print(f"one judgement of two 40-sample recordings: {time.perf_counter() - t0:.2f} s")


REAL_SETUP = ["--model", "reuseport", "--load", "steady", "--close", "--duration", "2"]


def real_pairs(pairs: int) -> None:
    import subprocess
    import tempfile

    print(f"real same-setup pairs: serverscope run {' '.join(REAL_SETUP)}, twice")
    false = unjudged = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(pairs):
            paths = [os.path.join(tmp, f"{i}{side}.jsonl") for side in "ab"]
            for path in paths:
                cmd = [sys.executable, "-m", "commands", "run", *REAL_SETUP, "--record", path]
                subprocess.run(cmd, check=True, capture_output=True)
            v = verdict.judge_files(*paths)
            false += bool(v.differences)
            unjudged += bool(v.confounded) and not v.differences
            ctx = v.row("other_cpu")
            print(f"  {i + 1}: {v.headline()}  [others: {ctx.shown if ctx else '-'}]")
    print(
        f"  {false}/{pairs} pairs with a difference; {unjudged} more with timing differences "
        f"left unjudged (the rest of the machine differed); load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--real", type=int, default=0, metavar="N")
    a = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    cost()
    same_setup(a.pairs, a.samples)
    power(max(20, a.pairs // 5), a.samples)
    if a.real:
        real_pairs(a.real)


if __name__ == "__main__":
    main()
