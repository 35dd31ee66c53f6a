"""What reading the CPU limit and throttling adds to a sample (readers.cgroupcpu), for 250
processes in one CPU-limited cgroup, as ms per sample and % of one core at 4 Hz, against
reading the same processes' /proc/PID/stat (what the sampler reads for each anyway), in
the same run.

    .venv/bin/python bench/bench_cgroupcpu.py [--processes 250] [--samples 40]

Needs root (it makes a cgroup of its own, and removes it). Each process's cgroup is re-read
every REFRESH_S (1 s) and each cgroup's cpu.stat every sample, so the mean holds one full
re-read of the pids every 4 samples.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from plumbing.cgroupfs import LimitedCgroup
from readers import procfs
from readers.cgroupcpu import CgroupCpuReader

HZ = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=250)
    ap.add_argument("--samples", type=int, default=40)
    a = ap.parse_args()
    procs = [subprocess.Popen(["sleep", "120"]) for _ in range(a.processes)]
    cg = LimitedCgroup(f"serverscope-bench-{os.getpid()}", 0.5)
    try:
        pids = [p.pid for p in procs]
        for pid in pids:
            cg.add(pid)
        reader = CgroupCpuReader()
        cgroup_ms, stat_ms = [], []
        for _ in range(a.samples):
            t0 = time.thread_time()
            got = reader.read(time.monotonic(), pids)
            t1 = time.thread_time()
            for pid in pids:
                procfs.read_stat(f"/proc/{pid}/stat")
            t2 = time.thread_time()
            cgroup_ms.append((t1 - t0) * 1000)
            stat_ms.append((t2 - t1) * 1000)
            time.sleep(1 / HZ)
        assert len(got) == 1 and got[0].cores == 0.5 and len(got[0].pids) == len(pids), got
    finally:
        for p in procs:
            p.kill()
            p.wait()
        cg.remove()
    c, s = statistics.mean(cgroup_ms), statistics.mean(stat_ms)
    print(f"load average {os.getloadavg()[0]:.1f}; {a.processes} processes, {a.samples} samples")
    print(f"cgroup limit + throttling: mean {c:.2f} ms/sample ({c * HZ / 10:.2f} % of a core)")
    print(f"/proc/PID/stat, same pids: mean {s:.2f} ms/sample; ratio {c / s:.2f}")


if __name__ == "__main__":
    main()
