"""The scoreboard: one Apache mod_status glyph per worker, up to 1024 at a glance.

A ScrollView drawn line by line (so 1024 workers cost one short line each), with a
cursor that selects the worker the fault keys act on (arrows, or a click).

Only workers get a cell (open and dead slots too, as Apache draws them): a master, a
helper, event's listener threads and an attached process's thread rows serve no request
of their own, and drawn as cells they made "2 workers" five cells (gunicorn's master and
threads) and put three `K` listeners beside "0 busy"; the title names them apart.
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

from values.snapshot import Role, WorkerSample, WorkerState

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
        self._workers = cells(frame)
        self._paused = frame.paused_pids
        old_cursor = self.cursor
        for i, w in enumerate(self._workers):
            if w.key == frame.selected:
                self.cursor = i
                break
        else:  # a master, listener or thread row is selected: no cell of the grid is
            self.cursor = -1
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
            lines |= {c // cols for c in (old_cursor, self.cursor) if c >= 0}
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
        self._select(max(0, self.cursor) + dx + dy * self.cols)

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


def cells(frame: Frame) -> tuple[WorkerSample, ...]:
    """What the grid draws: the workers and their open or dead slots, one cell each."""
    worker = Role.WORKER
    return tuple(w for w in frame.snapshot.workers if w.role == worker)


def summary(frame: Frame, width: int = 80) -> str:
    """'scoreboard · 4 workers · 3 busy · 1 idle · master 2% CPU' for the panel's title
    (the master's CPU when it is a process apart from its workers: cluster's deals every
    connection, and the master demo asks the audience to watch it). What is not a worker
    is named apart (event's listener threads, an attached worker's threads), never
    counted in: the count is the grid's live cells. Parts that do not fit in `width`
    (the panel's, borders included) are left out whole, the least telling first, never
    cut mid-word."""
    snap = frame.snapshot
    workers = snap.live_workers
    busy = sum(w.busy for w in workers)
    idle = sum(w.state == "waiting" for w in workers)
    unknown = sum(w.state == "unknown" for w in workers)
    threads = bool(workers) and workers[0].is_thread
    pids = {w.pid for w in workers}
    count = _count(len(workers), "thread" if threads else "worker")
    if threads:
        count += f" in {_count(len(pids), 'process', 'processes')}"
    parts: list[tuple[int, str]] = [(0, count)]  # (priority: 0 always, then 1, 2 ...)
    others = _others(snap.live_entities)
    if others:
        parts.append((3, f"+{others}"))
    if workers and unknown == len(workers):  # attached, states unread: not "0 busy"
        parts.append((0, "? busy · ? idle"))
    else:
        parts += [(0, f"{busy} busy"), (4, f"{idle} idle")]
        if unknown:
            parts.append((2, f"{unknown} ?"))
    model = snap.model
    # the master's CPU when it is a process apart from its workers
    cpu = model.master_cpu_percent if model is not None else None
    if model is not None and cpu is not None and workers and model.root_pid not in pids:
        parts.append((1, f"master {cpu:.0f}% CPU"))
    room = width - 6  # the border's corners and the spaces around the title
    text = " · ".join(t for _, t in parts)
    if len(text) + len("scoreboard · ") <= room:
        return f"scoreboard · {text}"
    for drop in (4, 3, 2, 1):
        if len(text) <= room:
            break
        text = " · ".join(t for p, t in parts if p < drop)
    return text


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _others(live: tuple[WorkerSample, ...]) -> str:
    """The live entities that are not workers, by role: '3 listeners', '12 threads'."""
    counts = {
        "listener": sum(w.role == Role.LISTENER for w in live),
        "helper": sum(w.role == Role.HELPER and not w.folded for w in live),
        "thread": sum(w.folded for w in live),
    }
    return ", ".join(_count(n, name) for name, n in counts.items() if n)
