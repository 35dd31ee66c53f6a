"""Benchmark the load generator's engines against wrk on the same server, in the same run.

    .venv/bin/python bench/bench_loadgen.py [--model reuseport] [--workers 2]
        [--connections 50] [--duration 5] [--wrk-threads 1] [--rounds 1]
        [--baseline-src OTHER_TREE/src] [--only-fast]

Starts one serverscope server on 127.0.0.1, then loads `GET /` with 50 keep-alive
connections from: wrk, the fast engine (uvloop if installed, then plain asyncio), and the
httpx engine, one after the other; prints each one's req/s and its ratio to wrk, and the
generator's CPU per request: its process's utime+stime (psutil, i.e. /proc/PID/stat)
over its completed requests, between 1 s into the run and 0.5 s before its end (start-up,
imports and the final drain left out). `--baseline-src` adds rows for the fast engine of
another checkout (e.g. `git archive main src | tar -x -C /tmp/base`), run alternately with
this one, so a change is measured before/after in one run on the same (shared) machine.

Run by hand (not a test); needs wrk (`apt-get install wrk`). The server has
MaxKeepAliveRequests unlimited, so the figures are request rates, not reconnect rates.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import psutil
from benchlib import need_wrk, run_wrk

import loadgen.runner
from loadgen.levels import LoadLevel
from loadgen.runner import LoadRunner
from plumbing.process import python_env
from servers.config import ServerConfig
from servers.supervisor import Supervisor

CPU_US: dict[str, list[float]] = {}  # generator CPU per request, by row


def run_engine(
    url: str,
    engine: str,
    connections: int,
    duration: float,
    uvloop: bool,
    row: str,
    src: str | None = None,
) -> float:
    """req/s of one run; its CPU per request goes to CPU_US[row]."""
    level = LoadLevel(name="bench", clients=connections, duration=duration)
    if src is not None:  # the generator process imports the other tree
        loadgen.runner.python_env = lambda: {**python_env(), "PYTHONPATH": src}  # type: ignore[attr-defined]
    try:
        with LoadRunner(url, level, engine, use_uvloop=uvloop) as r:
            proc = psutil.Process(r.pid)
            time.sleep(1.0)
            c0, n0 = sum(proc.cpu_times()[:2]), r.stats().requests
            time.sleep(max(0.5, duration - 1.5))
            c1, n1 = sum(proc.cpu_times()[:2]), r.stats().requests
            result = r.wait(duration + 30)
    finally:
        loadgen.runner.python_env = python_env  # type: ignore[attr-defined]
    if result is None:
        raise RuntimeError(f"{engine}: {r.error}")
    s = result.stats
    if s.error_count:
        print(f"  {engine}: errors {s.errors}", file=sys.stderr)
    if n1 > n0:
        us = (c1 - c0) * 1e6 / (n1 - n0)
        CPU_US.setdefault(row, []).append(us)
        note = f"    CPU {us:.1f} us/request ({c1 - c0:.2f} s for {n1 - n0:,} requests)"
        flag = getattr(s, "bottleneck", "")
        if flag:
            note += f"; {flag} ({s.bottleneck_share:.0%} of the readings)"
        print(note)
    return result.rps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="reuseport")  # even spread: many_accepts skews
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--skip-httpx", action="store_true")
    p.add_argument("--only-fast", action="store_true", help="wrk and fast (uvloop) only")
    p.add_argument("--baseline-src", help="another tree's src/: its fast engine, alternately")
    a = p.parse_args()
    if not need_wrk("bench_loadgen"):
        return 2
    cfg = ServerConfig(model=a.model, workers=a.workers, max_keepalive_requests=0)
    c, d = a.connections, a.duration
    with Supervisor(cfg) as sup:
        url = sup.url + "/"
        print(f"server: {a.model} x{a.workers} at {url}; {c} keep-alive connections")
        run_engine(url, "fast", c, 1.5, True, "warm-up")  # warm-up
        CPU_US.pop("warm-up", None)
        rows: dict[str, list[float]] = {}
        for _ in range(a.rounds):
            runs: list[tuple[str, Callable[[], float]]] = [
                ("wrk", lambda: run_wrk(url, c, d, a.wrk_threads)),
                ("fast (uvloop)", lambda: run_engine(url, "fast", c, d, True, "fast (uvloop)")),
            ]
            if a.baseline_src:
                runs.append(
                    (
                        "base (uvloop)",
                        lambda: run_engine(
                            url, "fast", c, d, True, "base (uvloop)", a.baseline_src
                        ),
                    )
                )
            if not a.only_fast:
                runs.append(
                    (
                        "fast (asyncio)",
                        lambda: run_engine(url, "fast", c, d, False, "fast (asyncio)"),
                    )
                )
                if not a.skip_httpx:
                    runs.append(("httpx", lambda: run_engine(url, "httpx", c, d, True, "httpx")))
            for name, fn in runs:
                before = sup.read().totals()["requests"]
                rps = fn()
                served = sup.read().totals()["requests"] - before
                rows.setdefault(name, []).append(rps)
                print(f"  {name:<16}{rps:>10,.0f} req/s  (server counted {served:,})")
                time.sleep(0.5)
    mean = {k: sum(v) / len(v) for k, v in rows.items()}
    print(f"\n{'generator':<16}{'req/s (mean)':>14}{'x wrk':>9}   rounds")
    for name, rps in mean.items():
        each = ", ".join(f"{x:,.0f}" for x in rows[name])
        print(f"{name:<16}{rps:>14,.0f}{rps / mean['wrk']:>9.2f}   {each}")
    print("\ngenerator CPU per request (utime+stime of its process, steady part of each run)")
    for name, us in CPU_US.items():
        print(f"  {name:<16}{sum(us) / len(us):>8.1f} us   " + ", ".join(f"{x:.1f}" for x in us))
    return 0


if __name__ == "__main__":
    sys.exit(main())
