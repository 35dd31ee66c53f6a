"""What each worker's current-request record costs (servers.inflight), in one run.

    .venv/bin/python bench/bench_requests.py [--baseline DIR] [--duration 5] [--rounds 3]

1. Per request, in-process (CPU time, the fastest of 7 runs): what a blocking worker adds
   per request (the request line cut from the bytes read, the record's begin and end, a
   clock read) against the same loop without it. Goal: < 2 us per request.
2. Sampler, 250 worker slots: reading their records when every one moved since the last
   sample (each decoded) and when none did (a sequence-number compare each), ms/sample.
3. With `--baseline DIR` (a copy of the code before, e.g. `git archive BASE src | tar -x
   -C DIR`) and wrk: the models' CPU per request under wrk (keep-alive, 64 connections),
   `serve` from this code and from DIR in alternating rounds (the same machine for both):
   many_accepts (an event loop: its oldest-request bookkeeping) and prefork (blocking).
   CPU per request is the steadier figure on a shared machine (other jobs take wrk's and
   the server's turns, not the server's CPU). Goal: this / baseline <= 1.03.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from benchlib import need_wrk, wrk

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

N = 200_000
DATA = b"GET /work?cpu_ms=1&io_ms=0&bytes=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def per_request_us() -> tuple[float, float]:
    """(us per request with the record, us of the same loop without it)."""
    from servers.inflight import Client, first_line
    from servers.scoreboard import Scoreboard

    board = Scoreboard.create(nslots=4)
    w = board.claim(0)
    req = w.req
    req.connected(Client("127.0.0.1", 51234, time.monotonic()))
    mono = time.monotonic

    def with_record() -> float:
        t0 = time.thread_time()
        for _ in range(N):
            line, _ = first_line(DATA)
            req.begin(line, mono())
            req.end()
        return (time.thread_time() - t0) / N * 1e6

    def without() -> float:
        t0 = time.thread_time()
        for _ in range(N):
            pass
        return (time.thread_time() - t0) / N * 1e6

    on = min(with_record() for _ in range(7))
    off = min(without() for _ in range(7))
    board.close()
    return on, off


def sampler_ms(nslots: int = 250) -> tuple[float, float]:
    """ms per sample for `nslots` slots' records: (every one moved, none moved)."""
    from types import SimpleNamespace

    from servers.inflight import Client
    from servers.scoreboard import Scoreboard
    from sources.supervisor_source import SupervisorSource

    board = Scoreboard.create()
    writers = [board.claim(i) for i in range(nslots)]
    for i, w in enumerate(writers):
        w.req.connected(Client("127.0.0.1", 40000 + i, 1.0))
    src = SupervisorSource.__new__(SupervisorSource)
    src.sup = SimpleNamespace(scoreboard=board)  # type: ignore[assignment]
    src._requests = {}

    def one(moved: bool) -> float:
        if moved:
            for w in writers:
                w.req.begin(DATA[:40], time.monotonic())
        t0 = time.thread_time()
        src._seqs = board.request_seqs()
        for i in range(nslots):
            src._current(i)
        return (time.thread_time() - t0) * 1000

    one(True)
    moved = statistics.median(one(True) for _ in range(20))
    still = statistics.median(one(False) for _ in range(20))
    board.close()
    return moved, still


def tree_cpu(root: int) -> float:
    """utime + stime of `root` and its descendants now (seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids, total = [root], 0
    while pids:
        pid = pids.pop()
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return total / tick


def serve_cpu_per_request(src: str, model: str, knobs: list[str], args) -> tuple[float, float]:
    """(req/s, server CPU us per request) of `serve MODEL` run from the code in `src`."""
    env = dict(os.environ, PYTHONPATH=src)
    proc = subprocess.Popen(
        [sys.executable, "-m", "commands", "serve", model, *knobs],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise RuntimeError(f"serve {model} from {src} printed no address")
        time.sleep(1.0)  # its workers up
        cpu0 = tree_cpu(proc.pid)
        rps, n = wrk(f"http://127.0.0.1:{port}/", args.connections, args.duration)
        cpu1 = tree_cpu(proc.pid)
        return rps, (cpu1 - cpu0) / max(1, n) * 1e6
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", help="a copy of the code before: DIR/src is imported")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (5)")
    p.add_argument("--rounds", type=int, default=3, help="this/baseline pairs per model (3)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    args = p.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    on, off = per_request_us()
    added = on - off
    verdict = "ok" if added < 2.0 else "OVER the 2 us goal"
    print(f"per request: {added:.2f} us added ({on:.2f} us with, {off:.2f} without): {verdict}")
    moved, still = sampler_ms()
    print(f"sampler, 250 worker slots: every record moved {moved:.2f} ms/sample, none {still:.3f}")
    if not args.baseline or not need_wrk("bench_requests"):
        return 0
    base = os.path.join(os.path.abspath(args.baseline), "src")
    for model, knobs in (("many_accepts", ["--workers", "2"]), ("prefork", [])):
        got: dict[str, list[tuple[float, float]]] = {"this": [], "baseline": []}
        for r in range(args.rounds):
            order = ("this", "baseline") if r % 2 == 0 else ("baseline", "this")
            for which in order:
                src = SRC if which == "this" else base
                got[which].append(serve_cpu_per_request(src, model, knobs, args))
        a = statistics.median(c for _, c in got["this"])
        b = statistics.median(c for _, c in got["baseline"])
        verdict = "ok" if a / b <= 1.03 else "OVER the 1.03 goal"
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{model}: server CPU per request {a:.1f} us, baseline {b:.1f} us (medians of "
            f"{args.rounds}): this/baseline = {a / b:.3f} ({verdict}; load average {load})"
        )
        for which, rounds in got.items():
            each = ", ".join(f"{x:,.0f} req/s {c:.1f} us" for x, c in rounds)
            print(f"  {which:8s}: {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
