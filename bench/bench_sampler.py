"""Sampler cost per sample, as % of one core at 4 Hz, from the mean cost, beside its goal
(issue 18: <= 2 % for 250 processes and for 400 threads, <= 6 % for 1,024 workers).

    .venv/bin/python bench/bench_sampler.py [--samples 40] [--skip-psutil] [--repeat 1]

Scenarios (`--only` picks some):
- processes: proc_spawn with 250 worker processes (a real server, idle);
- threads: 400 thread workers: a test process whose 400 threads each claim a scoreboard
  slot as Kind.THREAD;
- records: 250 such thread workers whose current-request records (servers.inflight) all
  change between two samples (a request begins or ends in every slot every 50 ms), against
  the same 250 with records that stand still, in the same run: what reading them costs
  when every one must be decoded (each is read only when its sequence number moved);
- 1024: proc_spawn with 1,024 worker processes, and how long it took to start (goal <= 3 s).
The machine's load average is printed with each figure: on a shared box the same code
reads up to 3x dearer (seen: 250 processes 5.8 ms at load 13, 3.1 ms at load 3).
Issue 18, on the shared 2-core box, this code against the previous one run alternately
(load 4-6): 250 processes 5.4 ms against 12.0 ms, 400 threads 6.7 against 12.7 ms; best
runs 4.4 ms (1.77 %), 5.6 ms (2.25 %), 1,024 processes 15.6 ms (6.2 %), started in 2.1-2.9 s.
The SYN_RECV dump (read every 5 s when idle) costs 4-7 ms with 60-90k TIME-WAIT on the
host and lands in the mean; Python's garbage collector is ~10 % of it at 400 threads.
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

from judging.analyser import Analyser
from servers.config import ServerConfig
from servers.scoreboard import Scoreboard
from servers.supervisor import Supervisor
from sources.sampler import Sampler
from sources.supervisor_source import SupervisorSource

HZ = 4
START_GOAL_S = 3.0


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


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(
    name: str, costs: list[float], nworkers: int, psutil_ms: float | None, goal_pct: float
) -> None:
    med = statistics.median(costs)
    mean = statistics.fmean(costs)  # what the CPU pays over time (refresh samples cost more)
    p90 = sorted(costs)[int(len(costs) * 0.9) - 1]
    pct = mean * HZ / 10
    verdict = "met" if pct <= goal_pct else "MISSED"
    print(
        f"{name}: {nworkers} workers, {len(costs)} samples: mean {mean:.2f} ms/sample "
        f"(median {med:.2f}, p90 {p90:.2f}) = {pct:.2f} % of one core at {HZ} Hz "
        f"(goal <= {goal_pct:g} %: {verdict}; {load()})"
        + (
            f"; psutil for CPU+RSS alone: {psutil_ms:.2f} ms = {psutil_ms * HZ / 10:.2f} %"
            if psutil_ms is not None
            else ""
        )
    )


def bench_processes(samples: int, with_psutil: bool, n: int = 250, goal: float = 2.0) -> None:
    t0 = time.monotonic()
    sup = Supervisor(ServerConfig(model="proc_spawn", workers=n)).start(timeout=120)
    started = time.monotonic() - t0
    if n > 250:
        verdict = "met" if started <= START_GOAL_S else "MISSED"
        print(
            f"proc_spawn --workers {n}: started (all workers waiting, GET / answered) in "
            f"{started:.2f} s (goal <= {START_GOAL_S:g} s: {verdict}; {load()})"
        )
    sampler = None
    try:
        sampler = Sampler.for_supervisor(sup)
        costs, nw = measure(sampler, samples)
        ps = psutil_way(sup.pids(), [], max(10, samples // 4)) if with_psutil else None
        report(f"proc_spawn {n} processes", costs, nw, ps, goal)
    finally:
        if sampler is not None:
            sampler.close()
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
    if {records}:  # a request begins or ends every 50 ms: every record moves each sample
        from servers.inflight import Client
        w.req.connected(Client("127.0.0.1", 40000 + i, time.monotonic()))
        while True:
            w.req.begin(b"GET /work?cpu_ms=1&io_ms=0&bytes=0 HTTP/1.1", time.monotonic())
            time.sleep(0.05)
            w.req.end()
            time.sleep(0.05)
    go.wait()
for i in range({n}):
    threading.Thread(target=work, args=(i,), daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""


def bench_threads(
    samples: int, with_psutil: bool, n: int = 400, *, records: bool = False, name: str = ""
) -> list[float]:
    board = Scoreboard.create()
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    code = textwrap.dedent(THREADS_CHILD.format(src=src, n=n, records=records))
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
        sampler.close()
        tids = [(s.pid, s.tid) for s in board.read().slots]
        ps = psutil_way([proc.pid], tids, max(10, samples // 4)) if with_psutil else None
        report(name or f"{n} thread workers in one process", costs, nw, ps, 2.0)
        return costs
    finally:
        proc.kill()
        proc.wait()
        lsock.close()
        board.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--skip-psutil", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="run every scenario this many times")
    ap.add_argument(
        "--only",
        default="processes,threads,records,1024",
        help="scenarios to run, comma-separated (processes, threads, records, 1024)",
    )
    a = ap.parse_args()
    only = set(a.only.split(","))
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    for _ in range(a.repeat):
        if "processes" in only:
            bench_processes(a.samples, not a.skip_psutil)
        if "threads" in only:
            bench_threads(a.samples, not a.skip_psutil)
        if "records" in only:
            still = bench_threads(a.samples, False, 250, name="250 threads, records still")
            moving = bench_threads(
                a.samples, False, 250, records=True, name="250 threads, every record moving"
            )
            ratio = statistics.fmean(moving) / statistics.fmean(still)
            print(f"  records moving / still (mean): {ratio:.2f}x ({load()})")
        if "1024" in only:
            bench_processes(a.samples, False, n=1024, goal=6.0)


if __name__ == "__main__":
    main()
