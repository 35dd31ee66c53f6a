"""Native stacks: eu-stack (Debian elfutils), else gdb in batch mode, run through
readers.stacktools (deadline, stop watch, one-line errors), their text parsed into
`stackvalues` frames. eu-stack first: it unwinds in a few ms and resolves symbols after it
has let the target go; gdb holds it for the whole session (300-800 ms seen)."""

from __future__ import annotations

import os
import re
from dataclasses import replace

from values.stackvalues import CaptureFailed, Frame, StackCapture, ThreadStack

from .stacktools import failed, find_tool, missing, run_tool

_EU_TID = re.compile(r"^TID (\d+):")
_EU_FRAME = re.compile(r"^#\d+\s+0x[0-9a-f]+(?: (?!- )(.+?))?(?: - (\S+))?$")
_EU_SOURCE = re.compile(r"^\s+(\S+?):(\d+)(?::\d+)?$")


def _comm(pid: int, tid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def parse_eu_stack(text: str, pid: int) -> tuple[ThreadStack, ...]:
    threads: list[ThreadStack] = []
    tid: int | None = None
    frames: list[Frame] = []

    def flush() -> None:
        if tid is not None:
            threads.append(ThreadStack(tid, _comm(pid, tid), None, tuple(frames)))

    for line in text.splitlines():
        if m := _EU_TID.match(line):
            flush()
            tid, frames = int(m.group(1)), []
        elif (m := _EU_FRAME.match(line)) and tid is not None:
            lib = m.group(2)
            frames.append(
                Frame(
                    m.group(1) or "??", module=os.path.basename(lib) if lib else None, native=True
                )
            )
        elif (m := _EU_SOURCE.match(line)) and frames:
            frames[-1] = replace(frames[-1], file=m.group(1), line=int(m.group(2)))
    flush()
    return tuple(threads)


_GDB_THREAD = re.compile(
    r'^Thread \d+ \((?:Thread 0x[0-9a-f]+ \(LWP (\d+)\)|process (\d+))(?: "([^"]*)")?\)'
)
_GDB_FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(")
_GDB_AT = re.compile(r"\) at (\S+):(\d+)$")
_GDB_FROM = re.compile(r"\) from (\S+)$")


def parse_gdb(text: str, pid: int) -> tuple[ThreadStack, ...]:
    threads: list[ThreadStack] = []
    tid: int | None = None
    name = ""
    frames: list[Frame] = []
    for line in text.splitlines():
        if m := _GDB_THREAD.match(line):
            if tid is not None:
                threads.append(ThreadStack(tid, name, None, tuple(frames)))
            tid, name, frames = int(m.group(1) or m.group(2)), m.group(3) or "", []
        elif m := _GDB_FRAME.match(line):
            if tid is None:  # a process without threads: no header
                tid, name = pid, _comm(pid, pid)
            at, lib = _GDB_AT.search(line), _GDB_FROM.search(line)
            frames.append(
                Frame(
                    m.group(1),
                    file=at.group(1) if at else None,
                    line=int(at.group(2)) if at else None,
                    module=os.path.basename(lib.group(1)) if lib else None,
                    native=True,
                )
            )
    if tid is not None:
        threads.append(ThreadStack(tid, name, None, tuple(frames)))
    return tuple(threads)


def native_stack(base: StackCapture, deadline: float, *, prefer: str) -> StackCapture:
    """Native frames of every thread, by eu-stack (the shorter stop) or else gdb."""
    order = ["gdb"] if prefer == "gdb" else ["eu-stack", "gdb"]
    tools = [(name, find_tool(name)) for name in order]
    found = [(name, path) for name, path in tools if path is not None]
    if not found:
        if prefer == "gdb":
            raise CaptureFailed(missing("gdb"))
        raise CaptureFailed(
            "no native stack tool: install the Debian package elfutils (eu-stack) or gdb "
            "(apt-get install elfutils gdb)"
        )
    name, exe = found[0]
    pid = str(base.pid)
    if name == "eu-stack":
        argv = [exe, "-p", pid, "-m", "-s", "-i"]
    else:
        argv = [exe, "-p", pid, "-batch", "-nx", "-iex", "set auto-load off"]
        argv += ["-ex", "thread apply all bt"]
    run = run_tool(argv, deadline, base.pid, base.tid, True)
    # eu-stack: 1 = some frames could not be unwound, the rest are good
    ok = run.code == 0 or (name == "eu-stack" and run.code == 1 and "TID" in run.out)
    if not ok:
        raise failed(name, run, base.pid, "in time")
    parse = parse_eu_stack if name == "eu-stack" else parse_gdb
    threads = parse(run.out, base.pid)
    notes = run.notes
    if len(found) < len(order) and prefer != "gdb":
        notes = (*notes, missing("eu-stack") + " (gdb stops the target longer)")
    return replace(
        base,
        method=name,
        threads=threads,
        stopped_s=run.stopped_s,
        stopped_how=f"{name}'s ptrace stop, seen in /proc",
        notes=notes,
    )
