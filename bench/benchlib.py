"""Helpers the benchmarks share: running wrk and reading its figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys


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
