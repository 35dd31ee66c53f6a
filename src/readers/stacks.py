"""A worker's stack, on demand: `capture(pid)` reads what every thread of a process is
doing, the way its runtime allows, and returns an immutable `StackCapture`.

    cap = capture(pid, timeout=10)      # never raises: a missing tool or a refused
    cap.ok, cap.error                   # ptrace is a one-line `error`
    for t in cap.threads: t.tid, t.name, t.state, t.frames[0].function, ...

The runtime comes from evidence (readers.stackkind), then:
- CPython: py-spy, `--nonblocking` by default (it reads the interpreter's memory without
  stopping it); `native=True` adds C frames, for which py-spy must stop the process;
- Go: the goroutine dump from `net/http/pprof` when the process was started with
  `-pprof-addr=127.0.0.1:PORT` (the Go original is); other Go programs: native frames;
- Node: the inspector (SIGUSR1 opens it) and one pause of the JavaScript thread;
- anything else: eu-stack (Debian elfutils), else gdb in batch mode.

Safe from any thread: each capture runs its tool as a child process (or, for Node, its
own event loop), bounded by `timeout`. It never kills or leaves the target stopped: a tool
that overruns is stopped itself, and a target a dying tracer left in group-stop gets
SIGCONT. `stopped_s` says how long the target was stopped, as an upper bound read from
outside (the tracer's stop seen in /proc), 0.0 when the method does not stop it, None when
unknown.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from values.stackvalues import CaptureFailed, Frame, StackCapture, ThreadStack, text_lines

from . import stackgo, stackjs, stacknative, stacktools
from .stackkind import Kind, Runtime, detect

__all__ = ["METHODS", "Frame", "StackCapture", "ThreadStack", "capture", "text_lines"]

DEFAULT_TIMEOUT_S = 10.0
METHODS = ("py-spy", "eu-stack", "gdb", "pprof", "inspector")


def _elapsed(t0: float) -> float:
    return round(time.monotonic() - t0, 6)


def capture(
    pid: int,
    tid: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    native: bool = False,
    method: str | None = None,
) -> StackCapture:
    """Every thread's stack in process `pid` (or only thread `tid`), within `timeout` s.

    `native`: for Python, C frames too (py-spy must then stop the target for a few ms).
    `method`: one of METHODS to force it (the bench compares them); None picks by runtime.
    Never raises for a missing tool, a refused ptrace or a process gone: `error` says why.
    """
    t0 = time.monotonic()
    deadline = t0 + max(0.1, timeout)
    runtime = detect(pid)
    base = StackCapture(pid, tid, runtime.kind.value, runtime.evidence, None)
    if runtime.kind is Kind.UNKNOWN and not os.path.exists(f"/proc/{pid}"):
        return replace(base, error=f"no process {pid}", took_s=_elapsed(t0))
    if tid is not None and not os.path.exists(f"/proc/{pid}/task/{tid}"):
        return replace(base, error=f"no thread {tid} in process {pid}", took_s=_elapsed(t0))
    if method is not None and method not in METHODS:
        return replace(base, error=f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    try:
        got = _dispatch(base, runtime, deadline, native=native, method=method)
    except CaptureFailed as e:
        got = replace(base, error=str(e))
    except Exception as e:  # a parser or protocol surprise must not kill the caller
        got = replace(base, error=f"stack capture failed: {type(e).__name__}: {e}")
    if tid is not None and any(t.tid is not None for t in got.threads):  # goroutines: all
        mine = tuple(t for t in got.threads if t.tid == tid)
        if not mine and got.error is None:
            got = replace(got, error=f"thread {tid} was not in the stack {got.method} read")
        got = replace(got, threads=mine)
    return replace(got, took_s=_elapsed(t0))


def _dispatch(
    base: StackCapture, runtime: Runtime, deadline: float, *, native: bool, method: str | None
) -> StackCapture:
    pid = base.pid
    chosen = method or _default_method(runtime, pid)
    if chosen == "py-spy":
        return stacktools.py_spy(base, deadline, native=native)
    if chosen == "pprof":
        return stackgo.goroutines(base, deadline)
    if chosen == "inspector":
        return stackjs.javascript(base, deadline)
    return stacknative.native_stack(base, deadline, prefer=chosen)


def _default_method(runtime: Runtime, pid: int) -> str:
    if runtime.kind is Kind.PYTHON:
        return "py-spy"
    if runtime.kind is Kind.NODE:
        return "inspector"
    if runtime.kind is Kind.GO and stackgo.pprof_address(pid) is not None:
        return "pprof"
    return "eu-stack"
