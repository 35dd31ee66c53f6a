"""The event log: spawns, deaths, overflow starting and ending, load and model changes,
faults and diagnoses as they first appear. Times are seconds since the lab started."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import RichLog

from lab.session import LabEvent

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


class EventLog(RichLog):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=KEEP, wrap=False, markup=False, auto_scroll=True)
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
        for e in events[start:]:
            line = Text(no_wrap=True)
            line.append(f"{e.time - t0:7.1f}s ", style="dim")
            line.append(f"{e.kind:<10}", style=KIND_STYLE.get(e.kind, ""))
            line.append(e.message)
            self.write(line)
        self._last = events[-1]
