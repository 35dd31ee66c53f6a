"""serverscope's models against the servers people actually run, in one run, as ratios.

    pip install -e '.[bench]'         # uvicorn[standard] and gunicorn; wrk: apt-get install wrk
    .venv/bin/python bench/bench_peers.py [--duration 5] [--rounds 1] [--only async|sync]

- async models (many_accepts, cluster, reuseport with --workers W; goroutines, one process)
  against uvicorn (uvloop + httptools) with as many worker processes: wrk, 64 keep-alive
  connections, `GET /`; both sides without a cap on requests per connection;
- blocking models (single; proc_spawn, prefork with N processes; worker with P x T
  threads) against gunicorn's sync (1, N) and gthread (P x T) workers: wrk with `Connection: close`;
- event (P x T threads) against gunicorn gthread (P x T), the fair peer: both park idle
  keep-alive connections instead of holding a thread. Load: --idle keep-alive clients
  (200) that each sent one request and went quiet, held open before and during a wrk run of
  64 keep-alive connections. This is where event's point shows: the same load on `worker`
  (printed for contrast) leaves its 8 threads to the idle clients until their keep-alive
  timeout (5 s) runs out.
Goal: >= 1.0x the peer. Every server runs on 127.0.0.1; every run is bounded by --duration.
Beside each req/s: the server's own CPU per request (all its processes and threads).
uvicorn must run as people run it, with uvloop and httptools (`uvicorn[standard]`): without
httptools it falls back to h11, about 5x the CPU per request, and the bench refuses to run.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
from benchlib import Times, cpu_of, need_wrk, wrk

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
    idle: int = 0  # idle keep-alive clients held open during the run
    note: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Peer:
    url: str
    proc: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [self.proc.pid, *(k.pid for k in kids)]


@contextlib.contextmanager
def peer(cmd: list[str]) -> Iterator[Peer]:
    port = free_port()
    argv = [a.format(port=port) for a in cmd]
    proc = subprocess.Popen(argv, cwd=HERE, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        if not probe("127.0.0.1", port, 20):
            raise RuntimeError(f"peer did not answer: {' '.join(argv)}")
        yield Peer(f"http://127.0.0.1:{port}/", proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def idle_clients(url: str, n: int) -> Iterator[None]:
    """`n` keep-alive clients that each send one request and then say nothing (their
    answers are left unread in the socket buffers); closed at the end."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            socks.append(s)
        time.sleep(0.3)  # let the server take them in before the measured load starts
        yield
    finally:
        for s in socks:
            s.close()


def uvicorn(workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "peer_apps:asgi_app", "--port", "{port}",
            "--workers", str(workers), "--log-level", "warning", "--no-access-log",
            "--backlog", "511"]  # fmt: skip


def gunicorn(workers: int, threads: int = 0, *, keepalive: bool = False) -> list[str]:
    kind = ["-k", "gthread", "--threads", str(threads)] if threads else ["-k", "sync"]
    # keep-alive as serverscope's models have it: 5 s idle, no cap on requests; the
    # connection limit above the idle clients plus wrk's (gunicorn's default is 1,000)
    ka = ["--keep-alive", "5", "--max-requests", "0"] if keepalive else []
    return [sys.executable, "-m", "gunicorn", "peer_apps:wsgi_app", "-b", "127.0.0.1:{port}",
            "-w", str(workers), *kind, *ka, "--backlog", "511",
            "--log-level", "warning"]  # fmt: skip


def cases(only: str | None, workers: int, idle: int = 200) -> list[Case]:
    unlimited = {"max_keepalive_requests": 0}
    out: list[Case] = []
    if only in (None, "async"):
        for m in ("many_accepts", "cluster", "reuseport"):
            cfg = ServerConfig(model=m, workers=workers, **unlimited)
            out.append(Case(cfg, uvicorn(workers), f"uvicorn -w {workers}"))
        cfg = ServerConfig(model="goroutines", **unlimited)
        out.append(Case(cfg, uvicorn(1), "uvicorn -w 1"))
    if only in (None, "sync"):
        out.append(Case(ServerConfig(model="single"), gunicorn(1), "gunicorn sync -w 1", CLOSE))
        n = 8
        out.append(Case(ServerConfig(model="proc_spawn", workers=n), gunicorn(n),
                        f"gunicorn sync -w {n}", CLOSE))  # fmt: skip
        pre = ServerConfig(
            model="prefork", start_servers=n, min_spare=1, max_spare=n, max_workers=n
        )
        out.append(Case(pre, gunicorn(n), f"gunicorn sync -w {n}", CLOSE))
        wk = ServerConfig(model="worker", workers=2, threads_per_child=4)
        out.append(Case(wk, gunicorn(2, 4), "gunicorn gthread -w 2 --threads 4", CLOSE))
    if only in (None, "sync", "idle"):
        for m in ("event", "worker"):
            # event admits ThreadsPerChild + AsyncRequestWorkerFactor x idle threads
            # connections per process: 4 + 2 x 4 = 12 at Apache's factor, so 200 idle
            # clients would fill it and wrk's connections would wait behind them in the
            # backlog for keep-alive timeouts (0 req/s, seen). Factor 100 admits them, as
            # gunicorn's worker_connections (1,000 per process) does.
            factor = {"async_factor": 100.0} if m == "event" else {}
            cfg = ServerConfig(model=m, workers=2, threads_per_child=4, **unlimited, **factor)
            note = "" if m == "event" else "contrast: threads held by idle clients"
            peer_cmd = gunicorn(2, 4, keepalive=True)
            name = "gunicorn gthread -w 2 --threads 4"
            out.append(Case(cfg, peer_cmd, name, idle=idle, note=note))
    return out


@dataclass
class Figure:
    rps: float
    cpu_us: float  # the server's CPU (user + system, all its processes) per request


def measure(url: str, pids: Callable[[], list[int]], case: Case, duration: float) -> Figure:
    with idle_clients(url, case.idle):
        wrk(url, case.connections, 1, case.headers)  # warm-up
        seen: dict[int, psutil.Process] = {}
        last: Times = {}
        u0, s0 = cpu_of(pids(), seen, last)
        rps, n = wrk(url, case.connections, duration, case.headers)
        u1, s1 = cpu_of(pids(), seen, last)
    cpu = 1e6 * (u1 + s1 - u0 - s0) / n if n else float("nan")  # no request: unknown
    return Figure(rps, cpu)


def versions() -> str:
    from importlib.metadata import version

    v = {m: version(m) for m in ("uvicorn", "uvloop", "httptools", "gunicorn")}
    return (
        f"uvicorn {v['uvicorn']} (uvloop {v['uvloop']}, httptools {v['httptools']}), "
        f"gunicorn {v['gunicorn']}"
    )


def mean(figs: list[Figure]) -> Figure:
    return Figure(sum(f.rps for f in figs) / len(figs), sum(f.cpu_us for f in figs) / len(figs))


def check_peers() -> str | None:
    """Why the peers cannot be run as people run them, or None."""
    for mod, extra in (("uvicorn", ""), ("gunicorn", ""), ("uvloop", ""), ("httptools", "")):
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is missing: pip install -e '.[bench]'{extra}"
    return None


def mode(case: Case) -> str:
    if case.idle:
        return f"keep-alive, {case.connections} connections + {case.idle} idle clients"
    kind = "close" if case.headers else "keep-alive"
    return f"{kind}, {case.connections} connections"


def label(case: Case) -> str:
    cfg = case.ours
    if cfg.model in ("worker", "event"):
        return f"{cfg.model} ({cfg.workers} x {cfg.threads_per_child} threads)"
    if cfg.model == "prefork":
        return f"prefork ({cfg.max_workers})"
    if cfg.model == "single":
        return "single (1 process)"
    if cfg.model == "goroutines":
        return f"goroutines ({cfg.workers or os.cpu_count()} loops, 1 process)"
    return f"{cfg.model} ({cfg.workers})"


def why(ours: Figure, theirs: Figure) -> str:
    """What the figures say about a miss."""
    if ours.cpu_us < theirs.cpu_us:
        return (
            f"less CPU per request than the peer ({ours.cpu_us:.0f} vs {theirs.cpu_us:.0f} us), "
            "so not the model's cost: the wall time went elsewhere (the host's other load?)"
        )
    return f"more CPU per request than the peer ({ours.cpu_us:.0f} vs {theirs.cpu_us:.0f} us)"


def table(rows: list[tuple[Case, Figure, Figure]]) -> str:
    """The README's markdown table: each ratio beside its goal, a miss said plainly."""
    out = [
        "| model | req/s | CPU us/req | peer | req/s | CPU us/req | ratio | goal | load |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for case, ours, theirs in rows:
        r = ours.rps / theirs.rps if theirs.rps else 0.0
        missed = ">= 1.0x **missed**: " + why(ours, theirs)
        goal = case.note or (">= 1.0x met" if r >= 1.0 else missed)
        out.append(
            f"| {label(case)} | {ours.rps:,.0f} | {ours.cpu_us:.0f} | {case.peer_name} "
            f"| {theirs.rps:,.0f} | {theirs.cpu_us:.0f} | **{r:.2f}x** | {goal} | {mode(case)} |"
        )
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--idle", type=int, default=200, help="idle keep-alive clients (event)")
    p.add_argument("--only", help="async, sync, idle, or comma-separated models")
    a = p.parse_args()
    if not need_wrk("bench_peers"):
        return 2
    why = check_peers()
    if why:
        print(f"bench_peers: {why}", file=sys.stderr)
        return 2
    print(f"> peers: {versions()}", flush=True)
    rows = []
    group = a.only if a.only in (None, "async", "sync", "idle") else None
    chosen = cases(group, a.workers, a.idle)
    if group is None and a.only:
        names = {n.strip() for n in a.only.split(",")}
        chosen = [c for c in chosen if c.ours.model in names]
        if not chosen:
            p.error(f"--only {a.only}: no such group or model")
    for case in chosen:
        ours_runs, peer_runs = [], []
        for _ in range(a.rounds):
            with Supervisor(case.ours) as sup:
                ours_runs.append(measure(sup.url + "/", sup.pids, case, a.duration))
            time.sleep(0.5)
            with peer(case.peer) as pr:
                peer_runs.append(measure(pr.url, pr.pids, case, a.duration))
            time.sleep(0.5)
        ours, theirs = mean(ours_runs), mean(peer_runs)
        rows.append((case, ours, theirs))
        print(f"{label(case):<32}{ours.rps:>9,.0f} ({ours.cpu_us:4.0f} us/req)  "
              f"{case.peer_name:<34}{theirs.rps:>9,.0f} ({theirs.cpu_us:4.0f} us/req)"
              f"  {ours.rps / theirs.rps:5.2f}x", flush=True)  # fmt: skip
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
