"""The detail table: one row per worker, the cursor selects a worker.

A ScrollView drawn line by line: a fixed header, then only the visible rows, each built
from its cells' values and kept as a Strip until those values change. A frame re-renders
only the visible rows whose values changed (most rows of an idle pool never do).
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size, Spacing
from textual.scroll_view import ScrollView
from textual.strip import Strip

from telemetry.snapshot import GLYPHS, WorkerSample

from .drawing import PAUSED_STYLE, STATE_STYLE, bar, fill_style, mib, num
from .frame import Frame, WorkerKey, rate
from .messages import WorkerSelected

PRIORITY = ("slot", "state", "cpu", "conns", "tot", "acc", "pid", "req", "rss")  # kept first
PAD = 2  # cell padding, both sides
COLUMNS = (  # label, key, width (fixed: updates never resize a column)
    ("#", "slot", 3),
    ("pid/tid", "pid", 7),
    ("state", "state", 7),
    ("CPU", "cpu", 11),
    ("conns", "conns", 5),
    ("accepts", "tot", 7),  # since the worker started, with its share of all the rows'
    ("acc/s", "acc", 5),
    ("req/s", "req", 6),
    ("RSS", "rss", 6),
)
WIDTH = {key: w for _, key, w in COLUMNS}
CPU_BAR = 6
SHARE_BAR = 2  # the accepts column's bar: the row's share of the accepts of all rows
ROLE_MARK = {"listener": "L", "master": "M", "helper": "H"}  # the # column of non-workers
SHORT = {
    "keepalive": "keep",
    "waiting": "wait",
    "starting": "start",
    "reading": "read",
    "working": "work",
    "writing": "write",
    "closing": "close",
    "unknown": "?",
}
HEADER = 1  # lines above the rows (not scrolled)
PAUSED_THREAD = "paused-process"  # the state value of a thread row whose process is paused
CELL_CACHE = 4096  # rendered cells kept (a cell is a (column, value) pair)

Piece = tuple[str, Style | None]  # some text of a cell and its own style


def fitting_columns(width: int) -> tuple[str, ...]:
    """The columns that fit in `width` cells, most useful first, in display order."""
    widths = {key: w + PAD for _, key, w in COLUMNS}
    keep: set[str] = set()
    used = 1  # the vertical scrollbar
    for key in PRIORITY:
        if used + widths[key] <= width or not keep:
            keep.add(key)
            used += widths[key]
    return tuple(key for _, key, _w in COLUMNS if key in keep)


def _count(n: int | None) -> str:
    """At most 5 cells: 1,040 / 12.3k / 123k / 1.2M (the accepts column is narrow so
    that it fits at 80 columns, where it matters more than acc/s)."""
    if n is None:
        return "-"
    if n < 10_000:
        return f"{n:,}"
    if n < 100_000:
        return f"{n / 1000:.1f}k"
    if n < 1_000_000:
        return f"{n // 1000}k"
    return f"{n / 1e6:.1f}M"


def _slot(w: WorkerSample) -> str:
    """The # column: the slot of a worker; L0 (listener of child 0), M (master), H."""
    mark = ROLE_MARK.get(w.role)
    if mark is None:
        return str(w.slot) if w.slot is not None else "-"
    return f"{mark}{w.group}" if mark == "L" and w.group >= 0 else mark


def _values(
    w: WorkerSample, interval: float | None, paused: bool, accepts: int = 0
) -> dict[str, object]:
    """What each cell shows, as plain values: cheap to compare from one frame to the next,
    so only rows whose values changed are rendered again. `accepts`: all the rows' accepts
    since they started, the denominator of this row's share."""
    total = w.accepts_total
    share = None if total is None or not accepts else round(total / accepts, 2)
    return {
        "slot": _slot(w),
        "pid": str(w.tid if w.is_thread else w.pid),
        # paused: a signal stops the whole process, so a thread row says its process is
        # stopped ("⏸ PROC": every thread of that pid shows it), a process row "⏸ STOP"
        "state": (PAUSED_THREAD if w.is_thread else None) if paused else w.state,
        "cpu": None if w.cpu_percent is None else round(w.cpu_percent),
        "conns": num(w.connections),
        "tot": (_count(total), share),
        "acc": num(rate(w.accepts, interval)),
        "req": num(rate(w.requests, interval)),
        "rss": mib(w.rss_bytes),
    }


def _cell(col: str, value: object) -> Text:
    if col == "state":
        if value is None:
            return Text("⏸ STOP", style=PAUSED_STYLE)
        if value == PAUSED_THREAD:
            return Text("⏸ PROC", style=PAUSED_STYLE)
        state = str(value)
        glyph = GLYPHS.get(state, "?")
        return Text(f"{glyph} {SHORT.get(state, state)}", style=STATE_STYLE.get(state, ""))
    if col == "cpu":
        cpu = Text()
        if value is None:
            cpu.append(" " * CPU_BAR + "    -")
        else:
            frac = float(value) / 100.0  # type: ignore[arg-type]
            cpu.append_text(bar(frac, CPU_BAR, fill_style(frac)))
            cpu.append(f"{value:4d}%")
        return cpu
    if col == "tot":
        count, share = value  # type: ignore[misc]
        t = Text()
        if share is None:
            t.append(" " * SHARE_BAR)
        else:
            t.append_text(bar(share, SHARE_BAR, "bold red" if share >= 0.5 else "cyan"))
        t.append(f"{count:>{WIDTH['tot'] - SHARE_BAR}}")
        return t
    return Text(str(value), justify="right")


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
        self._keys: list[WorkerKey] = []
        self._interval: float | None = None
        self._paused: frozenset[int] = frozenset()
        self._accepts = 0  # all rows' accepts since they started
        self._told: WorkerKey | None = None  # the selection the last frame carried
        self._last: Frame | None = None
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

    @property
    def row_count(self) -> int:
        return len(self._keys)

    def show(self, frame: Frame) -> None:
        self._last = frame
        self._set_columns()
        snap = frame.snapshot
        workers = [w for w in snap.workers if w.state != "empty"]
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
        cols = fitting_columns(self.scrollable_content_region.width or 80)
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
            cells = _values(w, self._interval, w.pid in self._paused, self._accepts)
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
            text = _cell(col, value)
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
