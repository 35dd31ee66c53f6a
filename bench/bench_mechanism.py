"""What reading the accept mechanism costs the lab's sampler (issue 22): the one-off read
of every process when the workers start, and the per-sample cost beside the same sampler
with the mechanism read switched off, in the same run (a ratio, the machine is shared).

    .venv/bin/python bench/bench_mechanism.py [--workers 1024] [--samples 40]

proc_spawn with N idle workers, each blocked in accept(): the full read is a readlink per
fd, the epoll fds' fdinfo and each thread's /proc/PID/task/TID/syscall, per process. A
sample afterwards only compares the set of processes with the last one (no /proc read).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from judging.analyser import Analyser
from readers.mechanism import WaitWatcher
from servers.config import ServerConfig
from servers.supervisor import Supervisor
from sources.sampler import Sampler
from sources.supervisor_source import SupervisorSource


def costs(sampler: Sampler, samples: int) -> list[float]:
    analyser = Analyser()
    for _ in range(3):  # warm up (the first read of the mechanism happens here)
        analyser.annotate(sampler.sample())
    out = []
    for _ in range(samples):
        out.append(analyser.annotate(sampler.sample()).cost_ms or 0.0)
        time.sleep(0.25)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=1024)
    ap.add_argument("--samples", type=int, default=40)
    a = ap.parse_args()
    sup = Supervisor(ServerConfig(model="proc_spawn", workers=a.workers)).start(timeout=120)
    try:
        pids = sup.pids()
        inodes = [(os.fstat(s.fileno()).st_ino, s.getsockname()[1]) for s in sup.listeners]
        t0 = time.thread_time()
        mechs = WaitWatcher().update(0.0, 1, pids, inodes, set(pids[1:]), set(), set())
        full = (time.thread_time() - t0) * 1000
        label = {m.spread for m in mechs.values()}, {m.wake for m in mechs.values()}
        print(f"full read of {len(pids)} processes: {full:.1f} ms CPU, read {label}")
        on = off = None
        runs: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(2):  # alternately, twice each
            for mode in ("on", "off"):
                src = SupervisorSource(sup)
                if mode == "off":
                    src._mechanisms = lambda *_: {}  # type: ignore[method-assign]
                s = Sampler(src)
                try:
                    runs[mode] += costs(s, a.samples)
                finally:
                    s.close()
        on, off = statistics.mean(runs["on"]), statistics.mean(runs["off"])
        print(
            f"per sample, {a.workers} workers: {on:.2f} ms with the mechanism read, "
            f"{off:.2f} ms without (ratio {on / off:.3f}; load {os.getloadavg()[0]:.1f})"
        )
    finally:
        sup.stop()


if __name__ == "__main__":
    main()
