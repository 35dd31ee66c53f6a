"""The scoreboard's legend: what each glyph means, in the colours the grid uses."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .drawing import PAUSED_STYLE, STATE_STYLE

LEGEND = (
    ("waiting", "_", "waiting"),
    ("starting", "S", "starting"),
    ("reading", "R", "reading"),
    ("working", "W", "working"),
    ("keepalive", "K", "keep-alive"),
    ("closing", "C", "closing"),
    ("empty", ".", "open slot"),
    ("dead", "X", "dead"),
)


class ScoreboardLegend(Static):
    """What each glyph means, in the colours the grid uses."""

    def on_mount(self) -> None:
        t = Text()
        for state, glyph, name in LEGEND:
            t.append(glyph, style=STATE_STYLE[state])
            t.append(f" {name}  ", style="dim")
        t.append(" ", style=PAUSED_STYLE)
        t.append(" paused", style="dim")
        self.update(t)
