"""How long `serverscope stack` stops its target, per method, measured from the target's side.

Goal (issue 25): a Python capture stops the target for at most 50 ms, and not at all with
py-spy's --nonblocking.

    .venv/bin/python bench/bench_stacks.py [--captures 20] [--only py-spy,eu-stack,...]

Each target spins in a tight loop reading CLOCK_MONOTONIC and prints every gap longer than
0.2 ms between two turns (start and end, CLOCK_MONOTONIC, the clock time.monotonic reads):
a stop shows as a gap. A capture's stop is the longest gap overlapping the capture's
window; the reference, measured in the same run, is the longest gap in windows of the
same length with no capture (the scheduler's own preemptions on a shared machine), taken
between captures. Printed per method: the median and maximum of both, and the median
`stopped_s` the capture itself reported (its upper bound seen from outside).

Targets: a CPython loop (methods py-spy --nonblocking, py-spy --native, eu-stack, gdb), a
Node loop (the inspector: SIGUSR1, one pause), a Go program built here with pprof on a
loopback port (the goroutine dump stops the world while it writes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from readers.stacks import capture

GAP_S = 0.0002

PY_LOOP = f"""
import sys, time
prev = time.monotonic()
while True:
    t = time.monotonic()
    if t - prev > {GAP_S}:
        sys.stdout.write(f"{{prev}} {{t}}\\n"); sys.stdout.flush()
        t = time.monotonic()
    prev = t
"""

JS_LOOP = f"""
process.debugPort = 0;
const fs = require('fs');
let prev = process.hrtime.bigint();
for (;;) {{
  let t = process.hrtime.bigint();
  if (t - prev > {int(GAP_S * 1e9)}n) {{
    fs.writeSync(1, `${{Number(prev) / 1e9}} ${{Number(t) / 1e9}}\\n`);
    t = process.hrtime.bigint();
  }}
  prev = t;
}}
"""

GO_LOOP = f"""
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"syscall"
	"time"
	"unsafe"
)

func mono() float64 {{
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}}

func main() {{
	ln, err := net.Listen("tcp", os.Args[1][len("-pprof-addr="):])
	if err != nil {{
		panic(err)
	}}
	go http.Serve(ln, nil)
	for i := 0; i < 50; i++ {{ // goroutines for the dump to walk, as a server has
		go func() {{ time.Sleep(time.Hour) }}()
	}}
	prev := time.Now()
	for {{
		now := time.Now()
		if d := now.Sub(prev); d > {int(GAP_S * 1e6)}*time.Microsecond {{
			t := mono()
			fmt.Printf("%f %f\\n", t-time.Since(prev).Seconds(), t)
			now = time.Now()
		}}
		prev = now
	}}
}}
"""


class Target:
    """A looping process and the gaps it reports."""

    def __init__(self, argv: list[str], cwd: str | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=cwd, text=True)
        self.gaps: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(1.0)  # start-up (imports, JIT) is not a stop

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            a, b = line.split()
            with self._lock:
                self.gaps.append((float(a), float(b)))

    def longest(self, t0: float, t1: float) -> float:
        time.sleep(0.05)  # the gap's line is written once the target runs again
        with self._lock:
            return max((b - a for a, b in self.gaps if b > t0 and a < t1), default=0.0)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def measure(target: Target, label: str, n: int, **kw: object) -> None:
    stops, refs, reported, took = [], [], [], []
    for _ in range(n):
        t0 = time.monotonic()
        cap = capture(target.proc.pid, **kw)  # type: ignore[arg-type]
        t1 = time.monotonic()
        if not cap.ok:
            print(f"{label}: {cap.error}")
            return
        stops.append(target.longest(t0, t1))
        took.append(t1 - t0)
        if cap.stopped_s is not None:
            reported.append(cap.stopped_s)
        time.sleep(0.1)
        r0 = time.monotonic()  # the reference: as long a window, no capture
        time.sleep(t1 - t0)
        refs.append(target.longest(r0, time.monotonic()))
        time.sleep(0.1)

    def ms(xs: list[float]) -> str:
        return (
            f"{statistics.median(xs) * 1000:7.1f} {max(xs) * 1000:7.1f}"
            if xs
            else "      -       -"
        )

    rep = f"{statistics.median(reported) * 1000:7.1f}" if reported else "      -"
    print(f"{label:<26} {ms(stops)}  {ms(refs)}  {rep}  {statistics.median(took) * 1000:7.0f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--captures", type=int, default=20)
    p.add_argument("--only", default="", help="methods, comma-separated (default: all)")
    a = p.parse_args()
    only = set(filter(None, a.only.split(",")))

    def want(m: str) -> bool:
        return not only or m in only

    print(f"load average {os.getloadavg()[0]:.1f}; {a.captures} captures per method (gdb: 1/4)")
    print(
        f"{'method':<26} {'stop (target side), ms':>15}  {'reference, ms':>15}  reported  took ms"
    )
    print(f"{'':<26} {'median':>7} {'max':>7}  {'median':>7} {'max':>7}  {'median':>7}")
    py = Target([sys.executable, "-c", PY_LOOP])
    try:
        if want("py-spy"):
            measure(py, "python: py-spy nonblocking", a.captures)
            measure(py, "python: py-spy --native", a.captures, native=True)
        if want("eu-stack"):
            measure(py, "python: eu-stack", a.captures, method="eu-stack")
        if want("gdb"):
            measure(py, "python: gdb", max(2, a.captures // 4), method="gdb")
    finally:
        py.stop()
    if want("inspector") and shutil.which("node"):
        js = Target(["node", "-e", JS_LOOP])
        try:
            measure(js, "node: inspector", a.captures)
        finally:
            js.stop()
    if want("pprof") and shutil.which("go"):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "loop.go").write_text(GO_LOOP)
            env = {**os.environ, "GOPROXY": "off", "GO111MODULE": "auto", "GOFLAGS": ""}
            subprocess.run(["go", "build", "-o", "loop", "loop.go"], cwd=tmp, env=env, check=True)
            go = Target([f"{tmp}/loop", f"-pprof-addr=127.0.0.1:{free_port()}"], cwd=tmp)
            try:
                measure(go, "go: pprof goroutine dump", a.captures)
            finally:
                go.stop()
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
