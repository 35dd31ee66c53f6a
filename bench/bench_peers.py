"""serverscope's models against the servers people actually run, in one run, as ratios.

    pip install -e '.[bench]'         # uvicorn[standard] and gunicorn; wrk: apt-get install wrk
    .venv/bin/python bench/bench_peers.py [--duration 5] [--rounds 1] [--only async|sync]

- async models (many_accepts, cluster, reuseport with --workers W; goroutines, one process)
  against uvicorn (uvloop + httptools) with as many worker processes: wrk, 64 keep-alive
  connections, `GET /`; both sides without a cap on requests per connection;
- blocking models (proc_spawn, prefork with N processes, worker with P x T threads) against
  gunicorn's sync (N) and gthread (P x T) workers: wrk with `Connection: close`.
Goal: >= 1.0x the peer. Every server runs on 127.0.0.1; every run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from benchlib import need_wrk, run_wrk

from servers.config import ServerConfig
from servers.supervisor import Supervisor, probe

HERE = os.path.dirname(os.path.abspath(__file__))
CLOSE = ("Connection: close",)


@dataclass
class Case:
    ours: ServerConfig
    peer: list[str]  # command line of the peer, with {port}
    peer_name: str
    headers: tuple[str, ...] = ()
    connections: int = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def peer(cmd: list[str]) -> Iterator[str]:
    port = free_port()
    argv = [a.format(port=port) for a in cmd]
    proc = subprocess.Popen(argv, cwd=HERE, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        if not probe("127.0.0.1", port, 20):
            raise RuntimeError(f"peer did not answer: {' '.join(argv)}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def uvicorn(workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "peer_apps:asgi_app", "--port", "{port}",
            "--workers", str(workers), "--log-level", "warning", "--no-access-log",
            "--backlog", "511"]  # fmt: skip


def gunicorn(workers: int, threads: int = 0) -> list[str]:
    kind = ["-k", "gthread", "--threads", str(threads)] if threads else ["-k", "sync"]
    return [sys.executable, "-m", "gunicorn", "peer_apps:wsgi_app", "-b", "127.0.0.1:{port}",
            "-w", str(workers), *kind, "--backlog", "511", "--log-level", "warning"]  # fmt: skip


def cases(only: str | None, workers: int) -> list[Case]:
    unlimited = {"max_keepalive_requests": 0}
    out: list[Case] = []
    if only in (None, "async"):
        for m in ("many_accepts", "cluster", "reuseport"):
            cfg = ServerConfig(model=m, workers=workers, **unlimited)
            out.append(Case(cfg, uvicorn(workers), f"uvicorn -w {workers}"))
        cfg = ServerConfig(model="goroutines", **unlimited)
        out.append(Case(cfg, uvicorn(1), "uvicorn -w 1"))
    if only in (None, "sync"):
        n = 8
        out.append(Case(ServerConfig(model="proc_spawn", workers=n), gunicorn(n),
                        f"gunicorn sync -w {n}", CLOSE))  # fmt: skip
        pre = ServerConfig(
            model="prefork", start_servers=n, min_spare=1, max_spare=n, max_workers=n
        )
        out.append(Case(pre, gunicorn(n), f"gunicorn sync -w {n}", CLOSE))
        wk = ServerConfig(model="worker", workers=2, threads_per_child=4)
        out.append(Case(wk, gunicorn(2, 4), "gunicorn gthread -w 2 --threads 4", CLOSE))
    return out


def measure(url: str, case: Case, duration: float) -> float:
    run_wrk(url, case.connections, 1, 2, case.headers)  # warm-up
    return run_wrk(url, case.connections, duration, 2, case.headers)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--only", choices=("async", "sync"))
    a = p.parse_args()
    if not need_wrk("bench_peers"):
        return 2
    for mod in ("uvicorn", "gunicorn"):
        try:
            __import__(mod)
        except ImportError:
            print(f"bench_peers: {mod} is missing: pip install -e '.[bench]'", file=sys.stderr)
            return 2
    rows = []
    for case in cases(a.only, a.workers):
        ours_runs, peer_runs = [], []
        for _ in range(a.rounds):
            with Supervisor(case.ours) as sup:
                ours_runs.append(measure(sup.url + "/", case, a.duration))
            time.sleep(0.5)
            with peer(case.peer) as url:
                peer_runs.append(measure(url, case, a.duration))
            time.sleep(0.5)
        ours, theirs = sum(ours_runs) / a.rounds, sum(peer_runs) / a.rounds
        rows.append((case, ours, theirs))
        print(f"{case.ours.model:<13}{ours:>10,.0f}  {case.peer_name:<34}{theirs:>10,.0f}"
              f"  {ours / theirs:5.2f}x", flush=True)  # fmt: skip
    print(f"\n{'model':<13}{'req/s':>10}  {'peer':<34}{'req/s':>10}  ratio")
    for case, ours, theirs in rows:
        mode = "close" if case.headers else "keep-alive"
        print(f"{case.ours.model:<13}{ours:>10,.0f}  {case.peer_name:<34}{theirs:>10,.0f}"
              f"  {ours / theirs:5.2f}x  ({mode}, {case.connections} connections)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
