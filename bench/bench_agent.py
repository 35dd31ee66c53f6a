"""What the fleet's agent costs: `serverscope attach --pid ROOT --no-ui --export` at 1 Hz
on 250 worker processes with 50,000 TIME-WAIT sockets, scraped every 15 s. Goal: at most 1%
of a core (10 ms of CPU a second), so it can be left running.

    .venv/bin/python bench/bench_agent.py [--workers 250] [--time-wait 50000] [--seconds 30]
        [--baseline-src OTHER_TREE/src] [--rounds 1] [--accepts both|estimate|exact]

`--baseline-src` runs the agent of another checkout too (e.g. `git archive main src | tar
-x -C /tmp/base`), alternately with this one, `--rounds` times each, on the same server
and TIME-WAIT sockets, and prints the medians and their ratio: a change measured
before/after in one run (the machine's load moves a single figure by 30% and more).

It runs itself in a network namespace of its own (`unshare -n`, loopback up), so its
TIME-WAIT sockets hold no port on the host (the kernel's established table is shared, so
the host's TIME-WAIT sockets are walked too and counted in the dump's cost).

The server is bench_sockdiag's: a master forking N children that block in accept() on one
listener and hold what they accept, 2 connections each. The agent is the real command, as
a user starts it, in each accept mode: `--estimate-accepts` (no eBPF) and, as root with
bpftrace, the exact eBPF accepts (bpftrace's CPU counted with the agent's). Its cost is the
CPU time (utime + stime, /proc/PID/stat, its children's included) over --seconds after it
has warmed up, while a scraper GETs /metrics every 15 s as Prometheus would. Reference,
same run and moment: one sock_diag dump of every TCP socket (what a sample's connection
count walks: the part eBPF per-process counts would remove), timed in this process.
Figures (notes, not asserted): docs/fleet.md, "The agent's cost".
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

from bench_sockdiag import SERVER, count_time_wait, make_time_wait  # noqa: E402

from readers.sockdiag import SockDiag  # noqa: E402

GOAL = 1.0  # % of one core
SCRAPE_S = 15.0  # Prometheus's default scrape interval
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> tuple[float, float]:
    """utime + stime of `pid` and of its live descendants, plus what its reaped children
    used (cutime + cstime), in seconds: (all, the descendants' alone: bpftrace)."""
    total = kids = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            continue
        used = sum(int(x) for x in fields[11:15]) / TICK  # utime stime cutime cstime
        total += used
        kids += used if p != pid else 0.0
    return total, kids


def dump_ms(port: int, n: int = 10) -> float:
    """Median CPU time of the connection dump a sample makes (the port's connected sockets:
    the kernel walks every socket, TIME-WAIT included, to find them), in this thread."""
    costs = []
    with SockDiag() as d:
        for _ in range(n):
            t0 = time.thread_time()
            d.inodes([port])
            costs.append((time.thread_time() - t0) * 1000)
    return statistics.median(costs)


def hold_time_wait(target: int, stop: threading.Event, seen: list[int]) -> None:
    """Keep about `target` TIME-WAIT sockets (each lasts 60 s) until `stop`."""
    while not stop.is_set():
        n = count_time_wait()
        seen.append(n)
        if n < target:
            make_time_wait(min(2000, target - n))
        else:
            stop.wait(1.0)


def scrape(url: str, stop: threading.Event, got: list[int]) -> None:
    while not stop.wait(SCRAPE_S):
        with urllib.request.urlopen(url, timeout=10) as r:
            got.append(len(r.read()))


def agent(
    root: int, mode: list[str], seconds: float, warm: float, src: str | None = None
) -> tuple[float, float, int, int]:
    """(CPU % of one core over `seconds`, of which bpftrace's, scrapes, bytes of the last
    scrape); `src`: the src/ to run the agent from (this checkout's by default: an
    interpreter whose editable install is another checkout would run that one's)."""
    argv = [sys.executable, "-m", "serverscope", "attach", "--pid", str(root), "--no-ui"]
    argv += ["--period", "1", "--export", "127.0.0.1:0", *mode]
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src or os.path.join(HERE, "..", "src"))}
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "exporting on http://" not in line:
            raise SystemExit(f"agent did not start: {line.strip()}")
        url = "http://" + line.split("exporting on http://")[1].split("/")[0] + "/metrics"
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain warnings
        time.sleep(warm)  # startup (imports, bpftrace's compile) is not the steady cost
        stop, got = threading.Event(), []
        scraper = threading.Thread(target=scrape, args=(url, stop, got), daemon=True)
        (c0, k0), t0 = cpu_s(proc.pid), time.monotonic()
        scraper.start()
        time.sleep(seconds)
        (c1, k1), t1 = cpu_s(proc.pid), time.monotonic()
        stop.set()
        pct = 100 / (t1 - t0)
        return pct * (c1 - c0), pct * (k1 - k0), len(got), got[-1] if got else 0
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=250)
    ap.add_argument("--time-wait", type=int, default=50_000)
    ap.add_argument("--seconds", type=float, default=46.0, help="measured, per mode (46)")
    ap.add_argument("--warm", type=float, default=8.0, help="left out at the start (8)")
    ap.add_argument("--baseline-src", help="another tree's src/: its agent too, alternately")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each agent per mode (1)")
    ap.add_argument(
        "--accepts", choices=("both", "estimate", "exact"), default="both", help="modes (both)"
    )
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.in_netns:
        inner = [sys.executable, *sys.argv, "--in-netns"]
        cmd = "ip link set lo up && exec " + " ".join(map(repr, inner))
        return subprocess.call(["unshare", "-n", "sh", "-c", cmd])
    modes = [["--estimate-accepts"]] if a.accepts != "exact" else []
    if os.geteuid() == 0 and shutil.which("bpftrace") and a.accepts != "estimate":
        modes.append(["--exact-accepts"])
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(a.workers)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    held: list[socket.socket] = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2 * a.workers)]
        print(f"agent cost: {a.workers} workers, {len(held)} held connections, 1 Hz")
        t0 = time.monotonic()
        make_time_wait(max(0, a.time_wait - count_time_wait()))
        print(f"  {count_time_wait()} TIME-WAIT made in {time.monotonic() - t0:.0f} s")
        stop, seen = threading.Event(), []  # topped up while measuring: each lasts 60 s
        threading.Thread(target=hold_time_wait, args=(a.time_wait, stop, seen), daemon=True).start()
        agents: list[tuple[str, str | None]] = [("", None)]
        if a.baseline_src:
            agents.insert(0, ("base ", a.baseline_src))
        try:
            for mode in modes:
                got: dict[str, list[float]] = {}
                for _ in range(a.rounds):
                    for label, src in agents:
                        start = len(seen)
                        pct, bpf, scrapes, size = agent(server.pid, mode, a.seconds, a.warm, src)
                        got.setdefault(label, []).append(pct)
                        ref = dump_ms(port)
                        tw = seen[start:] or [count_time_wait()]
                        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
                        print(
                            f"  {label}{' '.join(mode):18s} {pct:5.2f}% of a core "
                            f"({10 * pct:.1f} ms per 1 Hz sample, bpftrace {bpf:.2f}%, "
                            f"{scrapes} scrapes of {size / 1024:.0f} KiB); goal "
                            f"{GOAL:g}%: {'met' if pct <= GOAL else 'MISSED'}; TIME-WAIT "
                            f"{min(tw)}..{max(tw)}; reference: the sample's connection "
                            f"dump {ref:.1f} ms (sample / dump {10 * pct / ref:.1f}x); "
                            f"load {load}",
                            flush=True,
                        )
                if len(got) > 1 or a.rounds > 1:
                    mid = {k: statistics.median(v) for k, v in got.items()}
                    text = ", ".join(f"{k or 'this '}{v:.2f}%" for k, v in mid.items())
                    ratio = f" (this / base {mid[''] / mid['base ']:.2f}x)" if len(mid) > 1 else ""
                    print(f"  {' '.join(mode)} medians: {text}{ratio}", flush=True)
        finally:
            stop.set()
    finally:
        for c in held:
            c.close()
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
