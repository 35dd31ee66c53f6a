"""The event log: spawns, deaths, overflow starting and ending, load and model changes,
faults and diagnoses as they first appear. Times are seconds since the lab started.
A line longer than the log is wide goes on under its message (it was cut mid-word), and
a new width lays them out again."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from rich.text import Text
from textual import events as textual_events
from textual.widgets import RichLog

from judging.events import LabEvent

KIND_STYLE = {
    "model": "cyan",
    "load": "blue",
    "spawn": "green",
    "death": "bold red",
    "overflow": "bold red",
    "diagnosis": "yellow",
    "fault": "magenta",
    "error": "bold red",
    "demo": "bold cyan",
}
KEEP = 300
LEAD = 18  # "   12.3s diagnosis ": the time and the kind, before each message
WIDE = 60  # from this width a wrapped message goes on under its start, else nearly flush
NARROW_INDENT = 2


class EventLog(RichLog):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=KEEP, wrap=False, markup=False, auto_scroll=False)
        self._last: LabEvent | None = None

    def show(self, events: Sequence[LabEvent], t0: float) -> None:
        if not events:
            if self._last is not None:
                self.clear()
                self._last = None
            return
        if events[-1] is self._last:
            return
        start = 0
        if self._last is not None:
            try:
                start = len(events) - 1 - list(reversed(events)).index(self._last) + 1
            except ValueError:
                start = -1
        if start <= 0:  # first time, or the log moved under us (seek, old lines dropped)
            self.clear()
            start = max(0, len(events) - KEEP)
        width = self.scrollable_content_region.width - 1  # its scrollbar, once it has one
        indent = LEAD if width >= WIDE else NARROW_INDENT
        top = 0  # the line the newest event begins on
        for e in events[start:]:
            line = Text(no_wrap=True)
            line.append(f"{e.time - t0:7.1f}s ", style="dim")
            line.append(f"{e.kind:<10}", style=KIND_STYLE.get(e.kind, ""))
            for k, part in enumerate(_wrap(e.message, width - LEAD, width - indent)):
                line.append(("\n" + " " * indent if k else "") + part)
            top = len(self.lines)
            self.write(line)
        self._last = events[-1]
        # the end of the log, unless the newest event is taller than the log: then its
        # first lines (at 80x24 the log showed "0.2 s (Jain 0.31, 4 / workers, 29 accepts)")
        height = self.scrollable_content_region.height
        self.scroll_to(y=min(top, max(0, len(self.lines) - height)), animate=False)

    def on_resize(self, event: textual_events.Resize) -> None:
        if self._last is not None:  # the next show() writes every line again at this width
            self._last = None
            self.clear()


def _wrap(message: str, first: int, rest: int) -> list[str]:
    """The message broken between words: its first line `first` wide, the others `rest`
    (whole when the width is not known yet)."""
    if first < 12 or len(message) <= first:
        return [message]
    head, *_ = textwrap.wrap(message, first, break_long_words=True)
    tail = message[len(head) :].strip()
    return [head, *textwrap.wrap(tail, max(12, rest), break_long_words=True)]
