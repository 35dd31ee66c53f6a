"""What the automatic stack captures of stuck workers cost the TUI's process, at 250 workers.

Goal (issue 25 part 3): with captures on, the TUI (the lab's process) spends at most 2% of
a core more than without.

    .venv/bin/python bench/bench_autocapture.py [--seconds 30] [--workers 250]

A starved pool: 250 workers, each in one request that lasts 5 s and starts again (a new
episode every 5 s per worker), sampled at the lab's 4 Hz, as synthetic snapshots (the
sampler's own cost is bench_sampler's, and is the same with captures on or off). Two runs
of the same length, in the same process, one after the other:

- reference: each snapshot built and handed to a step that does nothing;
- captures on: each snapshot through `AutoCapture.step` (who is stuck, the budget, the
  grouped diagnosis), and the captures the budget allows (30 a minute, a worker at most
  once a minute) taken for real with py-spy --nonblocking of a sleeping Python process
  (every episode's pid is mapped to it: the tool, its output and its parsing are real).

Printed: the CPU time of this process (all its threads: process_time) per second of run
in each, as % of one core, the difference (the captures' cost; the goal is on it) and the
ratio; the py-spy children's CPU apart (the machine's cost, not the TUI's); captures and
episodes. Run it twice on a shared machine: one run is not a figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import synthetic
from judging.stuck import StuckSettings
from lab.autocapture import AutoCapture
from lab.stacks import worker_stack
from values.current import Current, Via
from values.snapshot import Snapshot

PERIOD = 0.25
REQUEST_S = 5.0


def stream(workers: int) -> Callable[[int, float], Snapshot]:
    """Snapshot number i at time t: every worker in a request begun at the last multiple
    of REQUEST_S (staggered per worker), as the scoreboard would show it."""
    base = synthetic.snapshot(workers=workers, states=["working"])

    def make(i: int, t: float) -> Snapshot:
        ws = []
        for w in base.workers:
            offset = (w.slot or 0) * REQUEST_S / workers
            began = t - ((t - offset) % REQUEST_S)
            cur = Current(Via.SCOREBOARD, 1, "GET /slow HTTP/1.1", "127.0.0.1:40000", began, began)
            ws.append(dataclasses.replace(w, current=cur, state_age_s=t - began))
        return dataclasses.replace(base, seq=i, time=t, workers=tuple(ws))

    return make


def run(
    seconds: float, make: Callable[[int, float], Snapshot], step: Callable[[Snapshot], object]
) -> float:
    """CPU seconds this process spent over `seconds` of 4 Hz steps."""
    c0 = time.process_time()
    t0 = time.monotonic()
    i = 0
    while (now := time.monotonic()) - t0 < seconds:
        step(make(i, now))
        i += 1
        time.sleep(max(0.0, t0 + i * PERIOD - time.monotonic()))
    return time.process_time() - c0


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=250)
    a = ap.parse_args()
    target = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    try:
        time.sleep(0.5)
        make = stream(a.workers)
        load = os.getloadavg()[0]
        ref = run(a.seconds, make, lambda snap: None)
        auto = AutoCapture(
            StuckSettings(), capturer=lambda pid, tid: worker_stack(target.pid, target.pid)
        )
        kids0 = children_cpu()
        on = run(a.seconds, make, auto.step)
        auto.close()
        kids = children_cpu() - kids0
    finally:
        target.kill()
        target.wait()
    pct = lambda cpu: 100.0 * cpu / a.seconds  # noqa: E731
    after = os.getloadavg()[0]
    ratio = on / ref if ref else float("inf")
    print(f"{a.workers} workers, {a.seconds:g} s each, load average {load:.1f} -> {after:.1f}")
    print(f"reference (no captures):  {pct(ref):6.2f}% of a core")
    print(f"captures on:              {pct(on):6.2f}% of a core")
    print(
        f"captures' cost:           {pct(on - ref):6.2f}% of a core (goal <= 2%), ratio {ratio:.2f}"
    )
    print(f"py-spy children:          {pct(kids):6.2f}% of a core (the machine's, not the TUI's)")
    refused = auto.budget.refused
    print(f"episodes {auto.episodes}, captures {auto.taken}, refused by the budget {refused}")


if __name__ == "__main__":
    main()
