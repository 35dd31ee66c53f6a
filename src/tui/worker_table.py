"""The detail table: one row per worker, the cursor selects a worker.

A ScrollView drawn line by line: a fixed header, then only the visible rows, each built
from its cells' values and kept as a Strip until those values change. A frame re-renders
only the visible rows whose values changed (most rows of an idle pool never do).
"""

from __future__ import annotations

import collections
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size, Spacing
from textual.scroll_view import ScrollView
from textual.strip import Strip

from values.snapshot import WorkerKey, WorkerSample, WorkerState

from .frame import Frame
from .messages import WorkerSelected
from .worker_cells import (
    ATTACH_PRIORITY,
    COLUMNS,
    PAD,
    PRIORITY,
    WIDTH,
    cell_text,
    fitting_columns,
    row_values,
)

HEADER = 1  # lines above the rows (not scrolled)
CELL_CACHE = 4096  # rendered cells kept (a cell is a (column, value) pair)
Piece = tuple[str, Style | None]  # some text of a cell and its own style


class WorkerTable(ScrollView, can_focus=True):
    """`show(frame)` fills it; moving the row cursor (keys, a click) posts `WorkerSelected`."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "worker-table--header",
        "worker-table--even-row",
        "worker-table--odd-row",
        "worker-table--cursor",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1)", "up", show=False),
        Binding("down", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cursor_row = 0
        self._columns: tuple[str, ...] = ()
        self._workers: list[WorkerSample] = []
        self._slotless = False  # attached: no slots, the pid column comes first
        self._threads: collections.Counter[int] = collections.Counter()  # pid: thread rows
        self._keys: list[WorkerKey] = []
        self._interval: float | None = None
        self._paused: frozenset[int] = frozenset()
        self._accepts = 0  # all rows' accepts since they started
        self._told: WorkerKey | None = None  # the selection the last frame carried
        self._values: dict[int, tuple[object, ...]] = {}  # this frame's, of rows computed
        self._strips: dict[int, tuple[tuple[object, ...], bool, Strip]] = {}  # row: drawn
        self._header: Strip | None = None
        self._cells: dict[tuple[str, object], tuple[Piece, ...]] = {}
        self._styles: tuple[Style, ...] = ()
        self._width = 0  # of the strips drawn

    # -- what the app uses --------------------------------------------------------------
    @property
    def rows(self) -> tuple[WorkerKey, ...]:
        """The workers shown, one per row."""
        return tuple(self._keys)

    def show(self, frame: Frame) -> None:
        snap = frame.snapshot
        self._slotless = bool(snap.workers) and all(w.slot is None for w in snap.workers)
        self._set_columns()
        # once per worker per frame (1,024 at 4 Hz): the enum members as locals, as
        # `WorkerState.EMPTY` is a lookup through the enum's metaclass (~0.27 us)
        empty = WorkerState.EMPTY
        workers = [w for w in snap.workers if w.state != empty]
        # attach: a multi-threaded process's thread rows are folded under it (t unfolds)
        self._threads = collections.Counter(w.pid for w in workers if w.folded)
        if not frame.threads and self._threads:
            workers = [w for w in workers if not w.folded]
        keys = [w.key for w in workers]
        self._workers = workers
        self._interval = snap.interval_s
        self._paused = frame.paused_pids
        self._accepts = sum(w.accepts_total or 0 for w in workers)
        self._values = {}
        if keys != self._keys:
            self._keys = keys
            self._strips.clear()
            self._told = None  # place the cursor on the selection again
            self.cursor_row = min(self.cursor_row, max(0, len(keys) - 1))
            self._resize_virtual()
            self.refresh()
        else:
            top, count = self._visible()
            for row in range(top, min(top + count, len(keys))):
                drawn = self._strips.get(row)
                if drawn is None or drawn[0] != self._row_values(row):
                    self._refresh_row(row)
        # Follow the app's selection only when it changed (the grid moved it): a frame
        # drawn between a key press and its WorkerSelected must not undo the key.
        sel = frame.selected
        if sel is not None and sel != self._told and sel in keys:
            self._move_cursor(keys.index(sel))
        self._told = sel

    # -- columns and size ---------------------------------------------------------------
    def _set_columns(self) -> bool:
        priority = ATTACH_PRIORITY if self._slotless else PRIORITY
        cols = fitting_columns(self.scrollable_content_region.width or 80, priority)
        if cols == self._columns:
            return False
        self._columns = cols
        self._values = {}
        self._strips.clear()
        self._header = None
        self._resize_virtual()
        self.refresh()
        return True

    def _table_width(self) -> int:
        return sum(WIDTH[c] + PAD for c in self._columns)

    def _resize_virtual(self) -> None:
        size = Size(self._table_width(), len(self._keys) + HEADER)
        if size != self.virtual_size:
            self.virtual_size = size

    def _visible(self) -> tuple[int, int]:
        """(first row shown, rows that fit below the header)."""
        height = self.scrollable_content_region.height
        return int(self.scroll_offset.y), max(0, height - HEADER)

    def on_resize(self, event: events.Resize) -> None:
        if not self._set_columns():
            self._strips.clear()
            self._header = None
            self.refresh()

    # -- drawing ------------------------------------------------------------------------
    def _row_values(self, row: int) -> tuple[object, ...]:
        values = self._values.get(row)
        if values is None:
            w = self._workers[row]
            threads = 0 if w.is_thread else self._threads.get(w.pid, 0)
            cells = row_values(w, self._interval, w.pid in self._paused, self._accepts, threads)
            values = tuple(cells[c] for c in self._columns)
            self._values[row] = values
        return values

    def _refresh_row(self, row: int) -> None:
        line = row - int(self.scroll_offset.y) + HEADER
        if HEADER <= line < self.scrollable_content_region.height:
            self.refresh(Region(0, line, max(self._width, self.size.width), 1))

    def _pieces(self, col: str, value: object) -> tuple[Piece, ...]:
        """A cell's text, cropped or padded to its column, as (text, style) pieces."""
        key = (col, value)
        pieces = self._cells.get(key)
        if pieces is None:
            width = WIDTH[col]
            text = cell_text(col, value)
            text.truncate(width, overflow="ellipsis", pad=text.justify != "right")
            text.pad_left(width - text.cell_len)
            console = self.app.console
            base = console.get_style(text.style) if text.style else None
            pieces = tuple(
                (s.text, base + s.style if base and s.style else base or s.style)
                for s in text.render(console)
                if s.text
            )
            if len(self._cells) >= CELL_CACHE:
                self._cells.clear()
            self._cells[key] = pieces
        return pieces

    def render_lines(self, crop: Region) -> list[Strip]:
        styles = (
            self.rich_style,
            self.get_component_rich_style("worker-table--header"),
            self.get_component_rich_style("worker-table--even-row"),
            self.get_component_rich_style("worker-table--odd-row"),
            self.get_component_rich_style("worker-table--cursor"),
        )
        width = max(self._table_width(), self.scrollable_content_region.width)
        if styles != self._styles or width != self._width:  # a new theme, focus, or size
            self._styles = styles
            self._width = width
            self._strips.clear()
            self._header = None
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        if y < HEADER:
            if self._header is None:
                self._header = self._header_strip()
            strip = self._header
        else:
            row = y - HEADER + scroll_y
            if not 0 <= row < len(self._keys):
                return Strip.blank(self._width, self._styles[0])
            values = self._row_values(row)
            cursor = row == self.cursor_row
            drawn = self._strips.get(row)
            if drawn is not None and drawn[0] == values and drawn[1] == cursor:
                strip = drawn[2]
            else:
                strip = self._row_strip(row, values, cursor)
                self._strips[row] = (values, cursor, strip)
        if scroll_x:
            strip = strip.crop(scroll_x, scroll_x + self.scrollable_content_region.width)
        return strip

    def _header_strip(self) -> Strip:
        style = self._styles[1]
        segments: list[Segment] = []
        for label, key, width in COLUMNS:
            if key in self._columns:
                segments.append(Segment(f" {label:<{width}} ", style))
        return Strip(segments).extend_cell_length(self._width, style).simplify()

    def _row_strip(self, row: int, values: tuple[object, ...], cursor: bool) -> Strip:
        _, _, even, odd, cursor_style = self._styles
        pre = odd if row % 2 else even
        post: Style | None = None
        if cursor:
            pre = pre + cursor_style
            post = Style.from_color(cursor_style.color)  # the cursor's colour wins
        segments: list[Segment] = []
        add = segments.append
        for col, value in zip(self._columns, values, strict=True):
            add(Segment(" ", pre))
            for text, style in self._pieces(col, value):
                cell = pre + style if style is not None else pre
                add(Segment(text, cell + post if post is not None else cell))
            add(Segment(" ", pre))
        return Strip(segments).extend_cell_length(self._width, pre).simplify()

    # -- cursor -------------------------------------------------------------------------
    def _move_cursor(self, row: int) -> None:
        old = self.cursor_row
        self.cursor_row = row
        if old != row:
            self._refresh_row(old)
            self._refresh_row(row)
        self.scroll_to_region(
            Region(0, row + HEADER, 1, 1),
            animate=False,
            spacing=Spacing(top=HEADER),
            force=True,
            immediate=True,
        )

    def _select(self, row: int) -> None:
        """The user moved the cursor: tell the app."""
        if not self._keys:
            return
        row = max(0, min(len(self._keys) - 1, row))
        moved = row != self.cursor_row
        self._move_cursor(row)
        if moved:
            self.post_message(WorkerSelected(self._keys[row]))

    def action_move(self, delta: int) -> None:
        self._select(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self._select(self.cursor_row + direction * max(1, self._visible()[1] - 1))

    def action_jump(self, where: int) -> None:
        self._select(0 if where == 0 else len(self._keys) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < HEADER:
            return
        row = offset.y - HEADER + int(self.scroll_offset.y)
        if 0 <= row < len(self._keys):
            self._select(row)
