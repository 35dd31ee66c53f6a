"""Small text-drawing helpers shared by the widgets: bars, sparklines, number formats."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

SPARKS = "▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉█"

# How each worker state is drawn (the glyph comes from the snapshot).
STATE_STYLE = {
    "empty": "dim",
    "starting": "bold cyan",
    "waiting": "green",
    "reading": "bold yellow",
    "working": "bold bright_white on dark_orange3",
    "writing": "bold bright_white on dark_orange3",
    "keepalive": "bold bright_blue",
    "closing": "yellow",
    "dead": "bold red",
    "unknown": "dim",
    "stopped": "bold bright_white on red3",  # attach: SIGSTOPped by someone, serves nothing
}
PAUSED_STYLE = "bold black on magenta"
SEVERITY_STYLE = {"info": "cyan", "warning": "bold yellow", "critical": "bold red"}


def spark(
    values: Sequence[float | None], width: int, lo: float = 0.0, hi: float | None = None
) -> Text:
    """A one-line sparkline of the last `width` values on a fixed scale (None: a gap)."""
    vals = list(values)[-width:] if width > 0 else []
    top = hi if hi is not None else max((v for v in vals if v is not None), default=0.0)
    out = Text()
    for v in vals:
        if v is None:
            out.append(" ")
            continue
        frac = 0.0 if top <= lo else (v - lo) / (top - lo)
        frac = min(1.0, max(0.0, frac))
        out.append(SPARKS[min(len(SPARKS) - 1, int(frac * (len(SPARKS) - 1) + 0.5))])
    return out


def bar(frac: float, width: int, style: str = "green", back: str = "grey23") -> Text:
    """A horizontal bar `width` cells wide, filled to `frac` (0..1) in eighths."""
    frac = min(1.0, max(0.0, frac))
    cells = frac * width
    full = int(cells)
    part = int((cells - full) * 8)
    t = Text()
    t.append("█" * full, style=style)
    if full < width:
        t.append(EIGHTHS[part] if part else " ", style=f"{style} on {back}")
        t.append(" " * (width - full - 1), style=f"on {back}")
    return t


def fill_style(frac: float) -> str:
    if frac >= 0.9:
        return "red"
    if frac >= 0.5:
        return "yellow"
    return "green"


def jain_style(j: float | None, judged: bool = True) -> str:
    """Green even, yellow uneven, red skewed; dim when unknown or resting on too few events."""
    if j is None or not judged:
        return "dim"
    if j >= 0.9:
        return "green"
    if j >= 0.7:
        return "yellow"
    return "bold red"
