"""The scoreboard's legend: what each glyph means, in the colours the grid uses."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from telemetry.snapshot import GLYPHS

from .drawing import PAUSED_STYLE, STATE_STYLE

LEGEND = (  # state, its name here (the glyph is the scoreboard's)
    ("waiting", "waiting"),
    ("starting", "starting"),
    ("reading", "reading"),
    ("working", "working"),
    ("keepalive", "keep-alive"),
    ("closing", "closing"),
    ("empty", "open slot"),
    ("dead", "dead"),
)
ATTACH_LEGEND = (("stopped", "stopped (SIGSTOP)"), ("unknown", "unknown"))  # attach adds


class ScoreboardLegend(Static):
    """What each glyph means, in the colours the grid uses."""

    def __init__(self, *, id: str | None = None, extra: tuple[tuple[str, str], ...] = ()):
        super().__init__(id=id)
        self.extra = extra

    def on_mount(self) -> None:
        text = Text()
        for state, name in (*LEGEND, *self.extra):
            text.append(GLYPHS[state], style=STATE_STYLE[state])
            text.append(f" {name}  ", style="dim")
        text.append(" ", style=PAUSED_STYLE)
        text.append(" paused", style="dim")
        self.update(text)
