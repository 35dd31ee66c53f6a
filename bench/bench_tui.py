"""Start-up times and the TUI's own CPU, measured on the real commands.

    .venv/bin/python bench/bench_tui.py [--seconds 10] [--workers 250 1024]

- `serverscope serve proc_spawn` (250 workers): seconds from the command to the first
  answered `GET /`;
- `serverscope` (the TUI, in a pseudo-terminal of 120x36): seconds from the command to the
  first live frame (the header reading "running");
- the TUI process's CPU (all its threads: drawing and the 4 Hz sampler) while it shows
  proc_spawn's 250 workers under the `light` load, as % of one core.
Goals: <= 2 s, <= 2 s, and (issue 18) the TUI <= 10 % of a core with 250 workers,
<= 15 % with 1,024. Each figure is printed with the load average at the time: the machine
is often shared, and the TUI's CPU grows with what it waits for. py-spy of the TUI at
1,024 workers (before issue 18's changes) put 2/3 of its CPU in the sampler thread and
1/3 in drawing. Run by hand; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time

import psutil

from servers.supervisor import probe

EXE = [sys.executable, "-m", "serverscope"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_startup(workers: int) -> float:
    port = free_port()
    t0 = time.monotonic()
    cmd = [*EXE, "serve", "proc_spawn", "--workers", str(workers), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        if not probe("127.0.0.1", port, 30):
            raise RuntimeError("serve proc_spawn did not answer within 30 s")
        return time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)


def tui(workers: int, seconds: float) -> tuple[float, float]:
    """(seconds to the first live frame, TUI CPU % of one core over `seconds`)."""
    t0 = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(COLUMNS="120", LINES="36")
        args = ["--model", "proc_spawn", "--workers", str(workers), "--load", "light"]
        os.execv(sys.executable, [*EXE, *args])
    out = b""
    first = None
    try:
        deadline = t0 + 30
        while first is None and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                out += os.read(fd, 1 << 16)
                if re.search(rb"running", out):
                    first = time.monotonic() - t0
        if first is None:
            raise RuntimeError(f"no live frame within 30 s: {out[-300:]!r}")
        time.sleep(3)  # let the pool and the load settle
        proc = psutil.Process(pid)
        before, w0 = proc.cpu_times(), time.monotonic()
        end = w0 + seconds
        while time.monotonic() < end:  # keep draining the terminal, as a terminal would
            if select.select([fd], [], [], 0.05)[0]:
                os.read(fd, 1 << 16)
        after, w1 = proc.cpu_times(), time.monotonic()
        cpu = (after.user + after.system - before.user - before.system) / (w1 - w0) * 100
        return first, cpu
    finally:
        os.write(fd, b"q")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if select.select([fd], [], [], 0.05)[0]:
                    os.read(fd, 1 << 16)
            except OSError:
                pass
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


CPU_GOALS = {250: 10.0, 1024: 15.0}  # % of one core (issue 18)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", type=int, nargs="+", default=[250, 1024])
    a = p.parse_args()
    for n in a.workers:
        s = serve_startup(n)
        print(f"serve proc_spawn ({n} workers) answered in {s:.2f} s (goal <= 2 s; {load()})")
        first, cpu = tui(n, a.seconds)
        print(f"TUI first live frame after {first:.2f} s (goal <= 2 s; {load()})")
        goal = CPU_GOALS.get(n, CPU_GOALS[1024] if n > 250 else CPU_GOALS[250])
        verdict = "met" if cpu <= goal else "MISSED"
        print(
            f"TUI CPU with {n} workers at 4 Hz: {cpu:.1f}% of one core "
            f"(goal <= {goal:g}%: {verdict}; {load()})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
