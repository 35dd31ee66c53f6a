"""`serverscope stack --pid PID`: what a process is doing now, every thread's stack (Python,
Go, Node or native frames, by what the process runs), and how long reading it stopped it.
Exit 0 with a stack; 1 when none could be read (the line on stderr says why and the fix);
2 for a bad argument."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from readers.stacks import DEFAULT_TIMEOUT_S, METHODS, capture, text_lines

from .common import DAY_S, EXIT_FAILED, EXIT_OK, fail, seconds, whole_number

PROG = "serverscope stack"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "stack",
        help="show what a process is doing: every thread's stack",
        description="Read the stack of every thread of a process (a worker of a server): "
        "Python frames with py-spy, a Go goroutine dump, a Node process's JavaScript stack "
        "through its inspector, native frames with eu-stack or gdb. Says how long the "
        "process was stopped for it (Python: not at all, by default).",
    )
    p.add_argument("--pid", type=whole_number, required=True, help="the process to read")
    p.add_argument("--tid", type=whole_number, help="only this thread of it")
    p.add_argument("--json", action="store_true", help="print the capture as JSON")
    p.add_argument(
        "--native",
        action="store_true",
        help="Python: C frames too (py-spy must stop the process for a few ms)",
    )
    p.add_argument("--method", choices=METHODS, help="read it this way (default: by runtime)")
    p.add_argument(
        "--timeout",
        type=seconds(above=0, at_most=DAY_S),
        default=DEFAULT_TIMEOUT_S,
        help=f"give up after this many seconds ({DEFAULT_TIMEOUT_S:g})",
    )
    return p


def run(a: argparse.Namespace) -> int:
    if a.pid <= 0:
        return fail(PROG, f"--pid must be a process id, got {a.pid}")
    cap = capture(a.pid, a.tid, timeout=a.timeout, native=a.native, method=a.method)
    if a.json:
        json.dump(cap.to_json(), sys.stdout, indent=1)
        print()
    else:
        lines = text_lines(cap)
        print("\n".join(ln for ln in lines if not ln.startswith("error: ")))
    if cap.error:
        print(f"{PROG}: {cap.error}", file=sys.stderr)
    return EXIT_OK if cap.ok else EXIT_FAILED
