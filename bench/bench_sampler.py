"""Sampler cost per sample, as % of one core at 4 Hz (goal: <= 2 %), from the mean cost.

    .venv/bin/python bench/bench_sampler.py [--samples 40] [--skip-psutil]

Scenarios:
- proc_spawn with 250 worker processes (a real server, idle);
- 400 thread workers: the `worker` model if it exists with --threads-per-child, else a
  test process whose 400 threads each claim a scoreboard slot as Kind.THREAD.
For comparison it also times the psutil way of reading the same CPU/RSS figures.
Cost = CPU time of the sampling thread (time.thread_time) per `Sampler.sample()` plus
`Analyser.annotate()` (imbalance and diagnoses), as a live session pays it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import psutil

from servers.config import ServerConfig
from servers.scoreboard import Scoreboard
from servers.supervisor import Supervisor
from telemetry.analyser import Analyser
from telemetry.sampler import Sampler
from telemetry.supervisor_source import SupervisorSource

HZ = 4


def measure(sampler: Sampler, samples: int) -> tuple[list[float], int]:
    analyser = Analyser()
    for _ in range(3):  # warm up: first deltas, caches
        analyser.annotate(sampler.sample())
        time.sleep(1 / HZ)
    costs = []
    nworkers = 0
    for _ in range(samples):
        snap = analyser.annotate(sampler.sample())
        costs.append(snap.cost_ms or 0.0)
        nworkers = len(snap.live_workers)
        time.sleep(1 / HZ)
    return costs, nworkers


def psutil_way(pids: list[int], tids: list[tuple[int, int]], samples: int) -> float:
    """ms of CPU per sample reading CPU (+RSS per process) through psutil."""
    procs = {pid: psutil.Process(pid) for pid in pids}
    costs = []
    for _ in range(samples):
        t0 = time.thread_time()
        for p in procs.values():
            with p.oneshot():
                p.cpu_times()
                p.memory_info()
            if tids:
                p.threads()  # per-thread utime/stime, all threads of the process
        costs.append((time.thread_time() - t0) * 1000)
        time.sleep(1 / HZ)
    return statistics.median(costs)


def report(name: str, costs: list[float], nworkers: int, psutil_ms: float | None) -> None:
    med = statistics.median(costs)
    mean = statistics.fmean(costs)  # what the CPU pays over time (refresh samples cost more)
    p90 = sorted(costs)[int(len(costs) * 0.9) - 1]
    print(
        f"{name}: {nworkers} workers, {len(costs)} samples: mean {mean:.2f} ms/sample "
        f"(median {med:.2f}, p90 {p90:.2f}) = {mean * HZ / 10:.2f} % of one core at {HZ} Hz"
        + (
            f"; psutil for CPU+RSS alone: {psutil_ms:.2f} ms = {psutil_ms * HZ / 10:.2f} %"
            if psutil_ms is not None
            else ""
        )
    )


def bench_processes(samples: int, with_psutil: bool) -> None:
    sup = Supervisor(ServerConfig(model="proc_spawn", workers=250)).start(timeout=60)
    try:
        sampler = Sampler.for_supervisor(sup)
        costs, n = measure(sampler, samples)
        ps = psutil_way(sup.pids(), [], max(10, samples // 4)) if with_psutil else None
        report("proc_spawn 250 processes", costs, n, ps)
    finally:
        sup.stop()


THREADS_CHILD = """
import os, sys, threading, time
sys.path.insert(0, {src!r})
from servers.scoreboard import Kind, Scoreboard, State
board = Scoreboard(int(sys.argv[1]))
board.set_model("threads400", os.getpid())
go = threading.Event()
def work(i):
    w = board.claim(i, kind=Kind.THREAD, group=0)
    w.state(State.WAITING)
    go.wait()
for i in range({n}):
    threading.Thread(target=work, args=(i,), daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""


def bench_threads(samples: int, with_psutil: bool, n: int = 400) -> None:
    board = Scoreboard.create()
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    code = textwrap.dedent(THREADS_CHILD.format(src=src, n=n))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(board.fd)], pass_fds=[board.fd], stdout=subprocess.PIPE
    )
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(511)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        fake = SimpleNamespace(
            scoreboard=board, proc=proc, listeners=[lsock], config=ServerConfig(model="worker")
        )
        sampler = Sampler(SupervisorSource(fake))  # type: ignore[arg-type]
        costs, nw = measure(sampler, samples)
        tids = [(s.pid, s.tid) for s in board.read().slots]
        ps = psutil_way([proc.pid], tids, max(10, samples // 4)) if with_psutil else None
        report(f"{n} thread workers in one process", costs, nw, ps)
    finally:
        proc.kill()
        proc.wait()
        lsock.close()
        board.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--skip-psutil", action="store_true")
    a = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    bench_processes(a.samples, not a.skip_psutil)
    bench_threads(a.samples, not a.skip_psutil)


if __name__ == "__main__":
    main()
