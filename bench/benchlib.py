"""Helpers the benchmarks share: running wrk and reading its figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import psutil


def need_wrk(prog: str) -> bool:
    if shutil.which("wrk") is None:
        print(f"{prog}: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return False
    return True


def run_wrk(
    url: str, connections: int, duration: float, threads: int = 1, headers: tuple[str, ...] = ()
) -> float:
    """Requests per second that wrk reached; errors it saw go to stderr."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"  wrk: {errors.group(0)}", file=sys.stderr)
    return float(m.group(1))


Times = dict[int, tuple[float, float]]


def cpu_of(pids: list[int], seen: dict[int, psutil.Process], last: Times) -> tuple[float, float]:
    """Total (user, system) CPU seconds of `pids` and of every process seen before (one
    that exited mid-run counts with its last reading)."""
    for pid in pids:
        if pid not in seen:
            try:
                seen[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
    for pid, proc in seen.items():
        try:
            t = proc.cpu_times()
            last[pid] = (t.user, t.system)
        except psutil.NoSuchProcess:
            pass
    return sum(u for u, _ in last.values()), sum(s for _, s in last.values())


def wrk(
    url: str, connections: int, duration: float, headers: tuple[str, ...] = (), threads: int = 2
) -> tuple[float, int]:
    """(req/s, requests) that wrk reached in one run."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    if not rps or not n:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if bad:
        print(f"  wrk: {bad.group(0)}", file=sys.stderr)
    return float(rps.group(1)), int(n.group(1))
