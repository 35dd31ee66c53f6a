"""The scoreboard's legend: what each glyph means, in the colours the grid uses."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from values.snapshot import GLYPHS

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
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        """Each glyph and its name, packed in lines by whole entries (wrapped as words,
        '.' ended one line and 'open slot' began the next)."""
        entries = [
            (GLYPHS[state], STATE_STYLE[state], name) for state, name in (*LEGEND, *self.extra)
        ]
        entries.append((" ", PAUSED_STYLE, "paused"))
        width = self.content_region.width or 1_000
        text = Text(no_wrap=True)
        used = 0
        for glyph, style, name in entries:
            cell = len(glyph) + 1 + len(name)
            if used and used + 2 + cell > width:
                text.append("\n")
                used = 0
            if used:
                text.append("  ")
                used += 2
            text.append(glyph, style=style)
            text.append(f" {name}", style="dim")
            used += cell
        self.update(text)
