"""A worker's stack in the worker detail: the one `d` took, or the one taken by itself
when the worker was stuck (lab.autocapture), whichever is newer. Plain `rich.Text` lines,
tested without an app.

`Stacks` gives the latest per worker: the ones `d` took, and those the source's history
carries (`Snapshot.stuck`: so a frozen screen, or a replay moved by a seek, shows what the
snapshots up to the one shown hold); a replay has only those (no live process to read).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from rich.text import Text

from judging.stuck import doing_words, stands
from values.current import seconds
from values.snapshot import Snapshot
from values.stackvalues import Frame, StackCapture, text_lines
from values.stuck import StuckCapture

from .frame import WorkerKey

MAX_LINES = 60  # of the stack text in the detail (it scrolls; py-spy's deepest are ~40)


@dataclass(frozen=True, slots=True)
class Taken:
    """A stack shown for a worker: why it was taken, when, and what came (None: under way)."""

    why: str  # "taken with d", "taken by itself: stuck in one request 2.1 s"
    time: float  # when it was asked for (monotonic)
    capture: StackCapture | None = None
    where: str | None = None  # where it stands, one line (judging.stuck.stands)


class Stacks:
    def __init__(self) -> None:
        self.manual: dict[WorkerKey, Taken] = {}  # d's
        self.auto: dict[WorkerKey, StuckCapture] = {}  # the latest in the history

    def follow(self, history: Iterable[Snapshot]) -> None:
        """The automatic captures the snapshots shown so far carry (a few hundred
        snapshots' `stuck`, almost all empty: microseconds)."""
        self.auto = {c.episode.key: c for snap in history for c in snap.stuck}

    def asked(self, key: WorkerKey, now: float) -> None:
        self.manual[key] = Taken("taken with d", now)

    def came(self, key: WorkerKey, asked_at: float, cap: StackCapture) -> None:
        self.manual[key] = Taken("taken with d", asked_at, cap)

    def get(self, key: WorkerKey) -> Taken | None:
        mine, auto = self.manual.get(key), self.auto.get(key)
        if auto is None:
            return mine
        if mine is None or auto.time > mine.time:
            return automatic(auto)
        return mine


def automatic(c: StuckCapture) -> Taken:
    e = c.episode
    age = seconds(c.time - e.since)
    doing = doing_words(e.what)
    bound = "" if e.exact else "at least "
    return Taken(f"taken by itself: stuck {doing} for {bound}{age}", c.time, c.stack, stands(c))


def _short(f: Frame) -> Frame:
    """A Python frame's file from its package root (`servers/blocking.py`, not the
    checkout's whole path: the pane is narrow, and the module says where it is)."""
    if f.native or not f.file or not f.module or "." not in f.module:
        return f
    tail = f.module.replace(".", "/") + ".py"
    return replace(f, file=tail) if f.file.endswith("/" + tail) else f


def _short_paths(cap: StackCapture) -> StackCapture:
    threads = tuple(replace(t, frames=tuple(map(_short, t.frames))) for t in cap.threads)
    return replace(cap, threads=threads)


def lines(t: Taken | None, now: float, *, live: bool) -> list[Text]:
    """The stack section of the worker detail."""
    if t is None:
        hint = "d takes it" if live else "none was taken by itself while recording"
        return [Text(f"stack: not taken ({hint})", style="dim")]
    ago = f"{seconds(now - t.time)} ago" if now >= t.time else "just now"
    if t.capture is None:
        return [Text(f"stack: reading it... ({t.why}, {ago})", style="italic")]
    head = Text(f"stack ({t.why}, {ago})", style="bold")
    out = [head]
    if t.where:
        out.append(Text(f"stands in {t.where}"))
    body = text_lines(_short_paths(t.capture))
    for ln in body[:MAX_LINES]:
        out.append(Text(ln, style="red" if ln.startswith("error: ") else ""))
    if len(body) > MAX_LINES:
        out.append(Text(f"... {len(body) - MAX_LINES} more lines", style="dim"))
    return out
