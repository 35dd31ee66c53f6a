"""Benchmark the load generator's engines against wrk on the same server, in the same run.

    .venv/bin/python bench/bench_loadgen.py [--model reuseport] [--workers 2]
        [--connections 50] [--duration 5] [--wrk-threads 1] [--rounds 1]

Starts one serverscope server on 127.0.0.1, then loads `GET /` with 50 keep-alive
connections from: wrk, the fast engine (uvloop if installed, then plain asyncio), and the
httpx engine, one after the other; prints each one's req/s and its ratio to wrk. Run by
hand (not a test); needs wrk (`apt-get install wrk`). The server has MaxKeepAliveRequests
unlimited, so the figures are request rates, not reconnect rates.
"""

from __future__ import annotations

import argparse
import sys
import time

from benchlib import need_wrk, run_wrk

from loadgen.levels import LoadLevel
from loadgen.runner import LoadRunner
from servers.config import ServerConfig
from servers.supervisor import Supervisor


def run_engine(url: str, engine: str, connections: int, duration: float, uvloop: bool) -> float:
    level = LoadLevel(name="bench", clients=connections, duration=duration)
    with LoadRunner(url, level, engine, use_uvloop=uvloop) as r:
        result = r.wait(duration + 30)
    if result is None:
        raise RuntimeError(f"{engine}: {r.error}")
    if result.stats.error_count:
        print(f"  {engine}: errors {result.stats.errors}", file=sys.stderr)
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
    a = p.parse_args()
    if not need_wrk("bench_loadgen"):
        return 2
    cfg = ServerConfig(model=a.model, workers=a.workers, max_keepalive_requests=0)
    with Supervisor(cfg) as sup:
        url = sup.url + "/"
        print(f"server: {a.model} x{a.workers} at {url}; {a.connections} keep-alive connections")
        run_engine(url, "fast", a.connections, 1.0, True)  # warm-up
        rows: dict[str, list[float]] = {}
        for _ in range(a.rounds):
            runs = [
                ("wrk", lambda: run_wrk(url, a.connections, a.duration, a.wrk_threads)),
                ("fast (uvloop)", lambda: run_engine(url, "fast", a.connections, a.duration, True)),
                (
                    "fast (asyncio)",
                    lambda: run_engine(url, "fast", a.connections, a.duration, False),
                ),
            ]
            if not a.skip_httpx:
                runs.append(
                    ("httpx", lambda: run_engine(url, "httpx", a.connections, a.duration, True))
                )
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
