"""Quitting the TUI: seconds from `q` to the shell prompt, with no process left behind.

    .venv/bin/python bench/bench_quit.py [--models all|python|originals|M,M] [--loads L,L]
                                         [--settle 4] [--repeat 1]

For every model (the nine Python models and the originals whose toolchain is present) and
every load (default: none, steady, keepalive-idle with its 300 clients, overload), it
starts the real console script `serverscope --model M --load L` in a pseudo-terminal of
120x36, waits for the first live frame (the header reading "running") and `--settle`
seconds more (keepalive-idle has ramped its 300 clients by then: prefork is starved),
notes every descendant pid of the TUI (server root, workers, load generator, watchdog),
presses q and measures:
  - exit: until the TUI process has exited (the shell would print its prompt);
  - gone: until that AND every descendant pid noted is gone (a zombie counts as gone).
Goal (issue 18): gone <= 0.5 s in every model and load. Run by hand; every process it
started is SIGKILLed at the end if it is still there.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from originals import registry
from plumbing.process import pid_alive
from servers import models

GOAL = 0.5  # seconds from q to the prompt, every process gone
EXE = str(Path(sys.executable).with_name("serverscope"))
DEFAULT_LOADS = ("none", "steady", "keepalive-idle", "overload")
START_TIMEOUT = 60.0
QUIT_TIMEOUT = 20.0


@dataclass
class Result:
    model: str
    load: str
    exit_s: float | None = None  # q -> the TUI process exited
    gone_s: float | None = None  # q -> that, and every descendant gone
    pids: int = 0  # descendants seen
    note: str = ""


def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _drain(fd: int, out: bytearray | None = None, timeout: float = 0.02) -> bool:
    """Read what the TUI wrote (as a terminal would); False once the pty is closed."""
    try:
        if select.select([fd], [], [], timeout)[0]:
            data = os.read(fd, 1 << 16)
            if not data:
                return False
            if out is not None:
                out += data
                del out[: max(0, len(out) - (1 << 16))]
    except OSError:
        return False
    return True


def measure(model: str, load: str, settle: float) -> Result:
    res = Result(model, load)
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(COLUMNS="120", LINES="36", TERM="xterm-256color")
        os.execv(EXE, [EXE, "--model", model, "--load", load])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    seen: set[int] = set()
    exited = False
    try:
        out = bytearray()
        deadline = time.monotonic() + START_TIMEOUT
        while not re.search(rb"running", out):
            if time.monotonic() > deadline or not _drain(fd, out):
                res.note = "no live frame: " + out[-200:].decode(errors="replace")
                return res
        end = time.monotonic() + settle
        while time.monotonic() < end:
            _drain(fd, timeout=0.05)
            seen |= _descendants(pid)
        seen |= _descendants(pid)
        res.pids = len(seen)
        t0 = time.monotonic()
        os.write(fd, b"q")
        deadline = t0 + QUIT_TIMEOUT
        while time.monotonic() < deadline:
            if not exited:
                _drain(fd, timeout=0.001)
                if os.waitpid(pid, os.WNOHANG)[0]:
                    exited = True
                    res.exit_s = time.monotonic() - t0
                else:
                    seen |= _descendants(pid)
            if exited:
                left = [p for p in seen if pid_alive(p)]
                if not left:
                    res.gone_s = time.monotonic() - t0
                    break
                time.sleep(0.001)
        else:
            left = [p for p in seen if pid_alive(p)]
            res.note = f"after {QUIT_TIMEOUT:g} s: {'TUI running, ' * (not exited)}{len(left)} left"
        return res
    finally:
        if not exited:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for p in seen:
            if pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        os.close(fd)


def model_names(which: str) -> list[str]:
    python = [s.name for s in models.available()]
    originals = [n for n in registry.NAMES if registry.spec(n).toolchain.present]
    if which == "all":
        return python + originals
    if which == "python":
        return python
    if which == "originals":
        return originals
    return which.split(",")


def fmt(x: float | None) -> str:
    return "  -   " if x is None else f"{x:6.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="all", help="all, python, originals, or M,M,...")
    p.add_argument("--loads", default=",".join(DEFAULT_LOADS))
    p.add_argument("--settle", type=float, default=4.0, help="seconds shown live before q")
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    names = model_names(a.models)
    loads = a.loads.split(",")
    missing = [n for n in registry.NAMES if not registry.spec(n).toolchain.present]
    if missing and a.models in ("all", "originals"):
        print(f"skipped (toolchain missing): {', '.join(missing)}", file=sys.stderr)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"q -> prompt, seconds (goal <= {GOAL:g} s with every process gone), {time.ctime()}")
    print(f"{os.cpu_count()} cores, load average {load} at the start")
    print(f"{'model':<22}{'load':<16}{'exit':>7}{'gone':>7}{'pids':>6}  goal")
    worst = 0.0
    failed = 0
    for model in names:
        for load in loads:
            for _ in range(a.repeat):
                r = measure(model, load, a.settle)
                ok = r.gone_s is not None and r.gone_s <= GOAL
                failed += not ok
                worst = max(worst, r.gone_s if r.gone_s is not None else float("inf"))
                verdict = f"<= {GOAL:g} {'ok' if ok else 'MISSED'}"
                print(
                    f"{model:<22}{load:<16}{fmt(r.exit_s)}{fmt(r.gone_s)}{r.pids:>6}  {verdict}"
                    + (f"  ({r.note})" if r.note else ""),
                    flush=True,
                )
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"worst {worst:.2f} s (goal <= {GOAL:g} s); {failed} missed; load average {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
