"""Each Python model against the original it copies, on the same load in one run, as ratios,
with the CPU each server spent per request (the evidence for what limits it).

    .venv/bin/python bench/bench_originals.py [--duration 5] [--rounds 1] [--only single,...]

Pairs (issue 18): many_accepts / node:many_accepts, cluster / node:simple_cluster,
goroutines / go:server, single / c:single, proc_spawn / c:proc_spawn, prefork /
apache:prefork, worker / apache:worker, event / apache:event. Both sides get the same
knobs (2 workers or loops on a 2-core machine; 8 processes for proc_spawn and prefork;
2 x 4 threads for worker and event) and the same wrk run: 64 connections, `GET /`,
keep-alive for the async models (no cap on requests per connection on either side),
`Connection: close` for the blocking ones (a keep-alive client would hold a blocking
worker to itself, and `single` would serve one of the 64 connections). Goal >= 0.5x.

What limits each side is read from the server's own CPU over the measured run (all its
processes and threads, from /proc through psutil, wrk excluded):
- `user us/req` and `sys us/req`: user-space CPU is the interpreter (Python per request),
  system CPU is the kernel (accept, epoll, read, write, close);
- `cores`: the server's CPU over the run's wall time. A server below one core while wrk
  waits on it is serialised (the GIL: goroutines' loops share one interpreter);
  near 2 cores it is CPU-bound on this machine, whoever pays.
`--profile` adds, for each Python model, the functions with the most samples of their own
(py-spy over all its processes during the run; `pip install py-spy`).
Needs the toolchains (gcc, nodejs, golang-go, apache2) and wrk (`apt-get install wrk`); a
pair whose original cannot run here is reported as skipped, naming the package.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from benchlib import Times, cpu_of, need_wrk, wrk

from lab.server import open_server
from originals.registry import spec as original_spec
from servers.config import ServerConfig

CLOSE = ("Connection: close",)
GOAL = 0.5


@dataclass
class Pair:
    model: str
    original: str
    knobs: dict[str, object]
    headers: tuple[str, ...]
    connections: int = 64

    @property
    def mode(self) -> str:
        return "close" if self.headers else "keep-alive"


@dataclass
class Measure:
    rps: float
    requests: int
    user_us: float  # server's user CPU per request
    sys_us: float  # server's system CPU per request
    cores: float  # server's CPU / wall time

    @property
    def cpu_us(self) -> float:
        return self.user_us + self.sys_us


def pairs(workers: int) -> list[Pair]:
    ka = {"max_keepalive_requests": 0}
    pool = {"start_servers": 8, "min_spare": 1, "max_spare": 8, "max_workers": 8}
    threads = {"workers": 2, "threads_per_child": 4}
    return [
        Pair("many_accepts", "node:many_accepts", {"workers": workers, **ka}, ()),
        Pair("cluster", "node:simple_cluster", {"workers": workers, **ka}, ()),
        Pair("goroutines", "go:server", {"workers": workers, **ka}, ()),
        Pair("single", "c:single", {}, CLOSE),
        Pair("proc_spawn", "c:proc_spawn", {"workers": 8}, CLOSE),
        Pair("prefork", "apache:prefork", pool, CLOSE),
        Pair("worker", "apache:worker", threads, CLOSE),
        Pair("event", "apache:event", threads, CLOSE),
    ]


def py_spy() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.path.exists(here) else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(root: int, seconds: float, out: list[str]) -> Iterator[None]:
    """py-spy over the model's whole tree (--subprocesses) while the measured run goes on;
    `out` gets the frames with the most samples of their own, as 'share% function (file)'.
    The sampling costs the server some CPU: profile in a run of its own."""
    exe = py_spy()
    if exe is None:
        out.append("py-spy is not installed (pip install py-spy)")
        yield
        return
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        cmd = [exe, "record", "--subprocesses", "--nonblocking", "-r", "100", "-f", "raw"]
        cmd += ["-d", str(max(1, int(seconds) - 1)), "-o", f.name, "-p", str(root)]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            spy.wait(30)
        own: Counter[str] = Counter()
        for ln in Path(f.name).read_text().splitlines():
            stack, _, n = ln.rstrip().rpartition(" ")
            if stack and n.isdigit():
                own[re.sub(r" \(.*/", " (", stack.split(";")[-1])] += int(n)
        total = sum(own.values()) or 1
        out.extend(f"{100 * n / total:4.0f}% {fn}" for fn, n in own.most_common(6))


def measure(name: str, pair: Pair, duration: float, profile: list[str] | None = None) -> Measure:
    srv = open_server(ServerConfig(model=name, **pair.knobs))  # type: ignore[arg-type]
    srv.start()
    try:
        url = srv.url + "/"
        wrk(url, pair.connections, 1, pair.headers)  # warm-up: workers spawned, caches hot
        seen: dict[int, psutil.Process] = {}
        last: Times = {}
        u0, s0 = cpu_of(srv.pids(), seen, last)
        t0 = time.monotonic()
        spying = profiled(srv.root_pid, duration, profile) if profile is not None else None
        with spying or contextlib.nullcontext():
            rps, n = wrk(url, pair.connections, duration, pair.headers)
        wall = time.monotonic() - t0
        u1, s1 = cpu_of(srv.pids(), seen, last)
    finally:
        srv.stop()
    n = max(n, 1)
    return Measure(rps, n, 1e6 * (u1 - u0) / n, 1e6 * (s1 - s0) / n, (u1 - u0 + s1 - s0) / wall)


def mean(ms: list[Measure]) -> Measure:
    k = len(ms)
    return Measure(
        sum(m.rps for m in ms) / k,
        sum(m.requests for m in ms) // k,
        sum(m.user_us for m in ms) / k,
        sum(m.sys_us for m in ms) / k,
        sum(m.cores for m in ms) / k,
    )


def verdict(pair: Pair, ours: Measure, theirs: Measure) -> str:
    """What limits the model, read from the figures (printed beside them, not a guess)."""
    if pair.model == "goroutines" and ours.cores < 1.2:
        return f"the GIL: its loops share one interpreter ({ours.cores:.2f} cores)"
    if pair.model == "single":  # one connection at a time: its CPU per request is its pace
        return (
            f"one connection at a time, so Python per request ({ours.user_us:.0f} us user "
            f"vs {theirs.user_us:.0f}) sets its pace"
        )
    both = (
        f"user {ours.user_us:.0f} vs {theirs.user_us:.0f} us, "
        f"kernel {ours.sys_us:.0f} vs {theirs.sys_us:.0f} us per request"
    )
    if ours.user_us <= 1.1 * theirs.user_us:
        return f"the CPU it shares with wrk, no costlier per request than the original ({both})"
    if ours.user_us >= ours.sys_us:
        return f"Python per request ({both})"
    return f"the kernel ({both})"


def line(model: str, m: Measure) -> str:
    return (
        f"{model:<20}{m.rps:>9,.0f} req/s  {m.user_us:6.1f} user + {m.sys_us:6.1f} sys "
        f"us/req  {m.cores:4.2f} cores"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=1, help="runs of each side, alternating")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--only", help="comma-separated models, e.g. goroutines,single")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the Python model during its run (pip install py-spy; its sampling "
        "slows the model, so read the ratios from a run without it)",
    )
    a = p.parse_args()
    if not need_wrk("bench_originals"):
        return 2
    chosen = pairs(a.workers)
    if a.only:
        names = {n.strip() for n in a.only.split(",")}
        chosen = [x for x in chosen if x.model in names]
    rows: list[tuple[Pair, Measure | None, Measure | None, str]] = []
    for pair in chosen:
        sp = original_spec(pair.original)
        if not sp.toolchain.present:
            why = f"skipped: apt-get install {sp.toolchain.package}"
            print(f"{pair.model}: {why}", flush=True)
            rows.append((pair, None, None, why))
            continue
        prof: list[str] | None = [] if a.profile else None
        mine, orig = [], []
        for r in range(a.rounds):  # alternating, so that the host's load falls on both
            mine.append(measure(pair.model, pair, a.duration, prof if r == 0 else None))
            time.sleep(0.5)
            orig.append(measure(pair.original, pair, a.duration))
            time.sleep(0.5)
        ours, theirs = mean(mine), mean(orig)
        why = verdict(pair, ours, theirs)
        rows.append((pair, ours, theirs, why))
        print(line(pair.model, ours), flush=True)
        print(line(pair.original, theirs) + f"  -> {ours.rps / theirs.rps:.2f}x", flush=True)
        for frame in prof or []:
            print(f"    {pair.model} own samples: {frame}", flush=True)
    print()
    print(table(rows, a.workers))
    return 0


def table(rows: list[tuple[Pair, Measure | None, Measure | None, str]], workers: int) -> str:
    """The README's markdown table: each figure beside its goal, a miss said plainly."""
    out = [
        "| model | req/s | CPU us/req (user+sys) | original | req/s | CPU us/req | ratio "
        "| goal | limited by |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for pair, ours, theirs, why in rows:
        if ours is None or theirs is None:
            out.append(f"| {pair.model} | | | {pair.original} | | | | >= {GOAL}x | {why} |")
            continue
        r = ours.rps / theirs.rps
        met = "met" if r >= GOAL else "**missed**"
        out.append(
            f"| {pair.model} ({pair.mode}) | {ours.rps:,.0f} "
            f"| {ours.user_us:.0f}+{ours.sys_us:.0f} "
            f"| {pair.original} | {theirs.rps:,.0f} | {theirs.user_us:.0f}+{theirs.sys_us:.0f} "
            f"| **{r:.2f}x** | >= {GOAL}x {met} | {why} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
