"""The scoreboard: one Apache mod_status glyph per worker, up to 1024 at a glance.

A ScrollView drawn line by line (so 1024 workers cost one short line each), with a
cursor that selects the worker the fault keys act on (arrows, or a click).
"""

from __future__ import annotations

import functools
import math

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from telemetry.snapshot import WorkerSample, WorkerState

from .drawing import PAUSED_STYLE, STATE_STYLE
from .frame import Frame
from .messages import WorkerSelected


@functools.cache
def _style(spec: str) -> Style:
    return Style.parse(spec)


class ScoreboardGrid(ScrollView, can_focus=True):
    """Glyph grid; `show(frame)` draws it, the cursor posts `WorkerSelected`."""

    BINDINGS = [
        Binding("left", "move(-1, 0)", "left", show=False),
        Binding("right", "move(1, 0)", "right", show=False),
        Binding("up", "move(0, -1)", "up", show=False),
        Binding("down", "move(0, 1)", "down", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._workers: tuple[WorkerSample, ...] = ()
        self._paused: frozenset[int] = frozenset()
        self.cursor = 0
        self._rows = 0
        self._looks: list[tuple[str, WorkerState, bool]] = []  # what each cell shows, as drawn
        self._drawn_cols = 0

    # -- drawing ------------------------------------------------------------------------
    @property
    def cols(self) -> int:
        return max(1, self.scrollable_content_region.width or self.size.width or 1)

    def show(self, frame: Frame) -> None:
        self._workers = frame.snapshot.workers
        self._paused = frame.paused_pids
        old_cursor = self.cursor
        for i, w in enumerate(self._workers):
            if w.key == frame.selected:
                self.cursor = i
                break
        else:
            self.cursor = min(self.cursor, max(0, len(self._workers) - 1))
        self._resize_virtual()
        # redraw only the lines whose glyphs (or the cursor) changed
        looks = [(w.glyph, w.state, w.pid in self._paused) for w in self._workers]
        cols = self.cols
        old, self._looks = self._looks, looks
        if len(old) != len(looks) or cols != self._drawn_cols:
            self._drawn_cols = cols
            self.refresh()
            return
        lines = {i // cols for i, (a, b) in enumerate(zip(old, looks, strict=True)) if a != b}
        if old_cursor != self.cursor:
            lines |= {old_cursor // cols, self.cursor // cols}
        for line in lines:
            self.refresh_line(line)

    def _resize_virtual(self) -> None:
        cols = self.cols
        rows = max(1, math.ceil(len(self._workers) / cols))
        size = Size(cols, rows)
        if size != self.virtual_size:
            self.virtual_size = size
            self.refresh(layout=True)
        if self._rows != rows:
            self._rows = rows
            self.styles.height = rows  # (max-height in CSS caps it; then it scrolls)

    def on_resize(self, event: events.Resize) -> None:
        self._resize_virtual()

    def render_line(self, y: int) -> Strip:
        _, scroll_y = self.scroll_offset
        row = y + scroll_y
        cols = self.cols
        base = self.rich_style
        segments = []
        start = row * cols
        for i, w in enumerate(self._workers[start : start + cols], start=start):
            spec = PAUSED_STYLE if w.pid in self._paused else STATE_STYLE.get(w.state, "")
            style = base + _style(spec)
            if i == self.cursor:
                style += _style("reverse underline" if self.has_focus else "reverse")
            segments.append(Segment(w.glyph, style))
        return Strip(segments).extend_cell_length(cols, base)

    # -- cursor -------------------------------------------------------------------------
    def _select(self, index: int) -> None:
        if not self._workers:
            return
        index = max(0, min(len(self._workers) - 1, index))
        self.cursor = index
        cols = self.cols
        self.scroll_to_region(Region(index % cols, index // cols, 1, 1), animate=False)
        self.refresh()
        self.post_message(WorkerSelected(self._workers[index].key))

    def action_move(self, dx: int, dy: int) -> None:
        self._select(self.cursor + dx + dy * self.cols)

    def action_jump(self, where: int) -> None:
        self._select(0 if where == 0 else len(self._workers) - 1)

    def on_click(self, event: events.Click) -> None:
        _, scroll_y = self.scroll_offset
        index = (event.y + scroll_y) * self.cols + event.x
        if 0 <= event.x < self.cols and index < len(self._workers):
            self._select(index)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def summary(frame: Frame, width: int = 80) -> str:
    """'scoreboard · 4 workers · 3 busy · 1 idle · master 2% CPU' for the panel's title
    (the master's CPU when it is a process apart from its workers: cluster's deals every
    connection, and the master demo asks the audience to watch it)."""
    workers = frame.snapshot.live_workers
    busy = sum(w.busy for w in workers)
    idle = sum(w.state == "waiting" for w in workers)
    unknown = sum(w.state == "unknown" for w in workers)
    kind = "threads" if workers and workers[0].is_thread else "workers"
    pids = {w.pid for w in workers}
    extra = f" in {len(pids)} processes" if kind == "threads" else ""
    if workers and unknown == len(workers):  # attached, states unread: not "0 busy"
        states = "? busy · ? idle"
    else:
        states = f"{busy} busy · {idle} idle" + (f" · {unknown} ?" if unknown else "")
    text = f"{len(workers)} {kind}{extra} · {states}"
    model = frame.snapshot.model
    # the master's CPU when it is a process apart from its workers
    cpu = model.master_cpu_percent if model is not None else None
    if model is not None and cpu is not None and workers and model.root_pid not in pids:
        text += f" · master {cpu:.0f}% CPU"
    return text if len(text) + 16 > width else f"scoreboard · {text}"
