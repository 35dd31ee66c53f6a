"""The values a stack capture returns (readers.stacks makes them): frames, threads and the
capture with its method, how long the target was stopped and its error; and their text.
Immutable, so a capture can cross threads (a TUI worker, an automatic capture)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Frame:
    function: str  # "time_sleep", "handle", "main.waitIO", "burnCpu"; "??" when unknown
    file: str | None = None  # source file, when the method knows it
    line: int | None = None  # 1-based line in `file`
    module: str | None = None  # Python module, shared library, Go package or script URL
    native: bool = False  # machine code (C, C++, Go), not an interpreter's frame


@dataclass(frozen=True)
class ThreadStack:
    tid: int | None  # the OS thread id; None for a goroutine (no fixed thread)
    name: str  # thread name ("MainThread"), "goroutine 18", "main JavaScript thread"
    state: str | None = None  # "idle", "active, holds the GIL", "IO wait", "running"...
    frames: tuple[Frame, ...] = ()  # innermost first
    origin: str | None = None  # Go: "created by net/http.(*Server).Serve"


@dataclass(frozen=True)
class StackCapture:
    pid: int
    tid: int | None  # the thread asked for; None: all of them
    kind: str  # a stackkind.Kind value
    evidence: str  # why that kind, one line
    method: str | None  # the command or protocol that read the stack; None: nothing ran
    threads: tuple[ThreadStack, ...] = ()
    # how long the target was stopped by the capture, seconds: an upper bound seen from
    # outside (see the method's `stopped_how`); 0.0 when the method does not stop it;
    # None when it cannot be measured
    stopped_s: float | None = None
    stopped_how: str = ""
    took_s: float = 0.0  # wall time of the whole capture
    error: str | None = None  # one line: why there is no stack, or why it is partial
    notes: tuple[str, ...] = field(default_factory=tuple)  # fall-backs taken, caveats

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.threads)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


class CaptureFailed(Exception):
    """Raised inside a method with the one line to show; `capture` turns it into `error`."""


# -- text ----------------------------------------------------------------------------------


def describe_frame(f: Frame) -> str:
    parts = [f.function]
    if f.file:
        parts.append(f"{f.file}:{f.line}" if f.line else f.file)
    if f.module and not f.function.startswith(f.module) and not (f.file and f.module in f.file):
        parts.append(f"({f.module})")
    return "  ".join(parts)


def text_lines(cap: StackCapture, *, max_frames: int = 40) -> list[str]:
    """The capture as plain lines, innermost frame first (the command and the TUI pane)."""
    head = f"pid {cap.pid}: {cap.kind} ({cap.evidence})"
    lines = [head]
    if cap.method:
        stop = _stop_words(cap)
        lines.append(f"read with {cap.method} in {cap.took_s * 1000:.0f} ms; {stop}")
    lines += [f"note: {n}" for n in cap.notes]
    for t in cap.threads:
        ident = f"thread {t.tid}" if t.tid is not None else t.name
        name = f" {t.name!r}" if t.tid is not None and t.name else ""
        state = f" [{t.state}]" if t.state else ""
        lines.append(f"{ident}{name}{state}")
        for f in t.frames[:max_frames]:
            lines.append(f"    {describe_frame(f)}")
        if len(t.frames) > max_frames:
            lines.append(f"    ... {len(t.frames) - max_frames} more frames")
        if t.origin:
            lines.append(f"    {t.origin}")
    if cap.error:
        lines.append(f"error: {cap.error}")
    return lines


def _stop_words(cap: StackCapture) -> str:
    if cap.stopped_s is None:
        return f"stopped for an unknown time ({cap.stopped_how})" if cap.stopped_how else ""
    if cap.stopped_s == 0:
        return f"the target was not stopped ({cap.stopped_how})"
    return f"the target was stopped at most {cap.stopped_s * 1000:.1f} ms ({cap.stopped_how})"
