"""The banner that names the current phenomenon in words (the diagnoses of the snapshot)."""

from __future__ import annotations

import math

from rich.text import Text

from values.findings import severity_rank

from .drawing import SEVERITY_STYLE
from .frame import Frame
from .quiet_static import QuietStatic, text_shape

ICONS = {"info": "i", "warning": "⚠", "critical": "✖"}
MAX_LINES = 3


class DiagnosisBanner(QuietStatic):
    shown = ""  # the text last shown

    @property
    def lines(self) -> int:
        """Rows it takes: its lines, each wrapped at its width (a long diagnosis wraps)."""
        width = max(1, self.content_region.width or self.screen.size.width - 2)
        rows = sum(max(1, math.ceil(len(line) / width)) for line in self.shown.split("\n"))
        return min(MAX_LINES, rows)

    def show(self, frame: Frame) -> None:
        diags = sorted(frame.snapshot.diagnoses, key=lambda d: severity_rank(d.severity))
        critical = any(d.severity == "critical" for d in diags)
        self.set_class(critical, "-critical")
        self.set_class(bool(diags) and not critical, "-warning")
        self.set_class(False, "-status")
        t = Text(no_wrap=True, overflow="ellipsis")
        if not diags:
            t.append("✓ ", style="green")
            t.append("no phenomenon right now", style="green")
            live = frame.snapshot.live_workers
            if live and all(w.state == "unknown" for w in live):  # attached, states unread
                t.append(f" · {len(live)} workers, busy unknown", style="dim")
            elif live:
                busy = sum(w.busy for w in live)
                t.append(f" · {busy}/{len(live)} workers busy", style="dim")
        for i, diag in enumerate(diags[:MAX_LINES]):
            if i:
                t.append("\n")
            icon = ICONS.get(diag.severity, "•")
            t.append(f"{icon} ", style=SEVERITY_STYLE.get(diag.severity, ""))
            t.append(diag.message, style="bold")
        if len(diags) > MAX_LINES:
            t.append(f"  (+{len(diags) - MAX_LINES} more)", style="dim")
        self.shown = t.plain
        self.show_content(t, height=text_shape(t))

    def status(self, message: str, *, error: bool = False) -> None:
        """A line about the lab itself (starting, restarting, stopped) in place of diagnoses."""
        self.set_class(error, "-critical")
        self.set_class(False, "-warning")
        self.set_class(not error, "-status")
        t = Text(message, style="bold" if error else "")
        self.shown = t.plain
        self.show_content(t, height=text_shape(t))
