"""The detail table: one row per worker (those that fit), the cursor selects a worker."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from telemetry.snapshot import GLYPHS, WorkerSample

from .drawing import PAUSED_STYLE, STATE_STYLE, bar, fill_style, mib, num
from .frame import Frame, WorkerKey, rate
from .messages import WorkerSelected

MAX_ROWS = 128  # rows kept in the table; with more workers, a window around the selection
PRIORITY = ("slot", "state", "cpu", "conns", "acc", "pid", "req", "rss")  # kept first
PAD = 2  # cell padding, both sides
COLUMNS = (  # label, key, width (fixed: updates never resize a column)
    ("#", "slot", 3),
    ("pid/tid", "pid", 7),
    ("state", "state", 7),
    ("CPU", "cpu", 11),
    ("conns", "conns", 5),
    ("acc/s", "acc", 5),
    ("req/s", "req", 6),
    ("RSS", "rss", 6),
)
CPU_BAR = 6
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


def _values(w: WorkerSample, interval: float | None, paused: bool) -> dict[str, object]:
    """What each cell shows, as plain values: cheap to compare from one frame to the next,
    so only cells whose value changed are rendered again."""
    return {
        "slot": str(w.slot) if w.slot is not None else "-",
        "pid": str(w.tid if w.is_thread else w.pid),
        "state": None if paused else w.state,
        "cpu": None if w.cpu_percent is None else round(w.cpu_percent),
        "conns": num(w.connections),
        "acc": num(rate(w.accepts, interval)),
        "req": num(rate(w.requests, interval)),
        "rss": mib(w.rss_bytes),
    }


def _cell(col: str, value: object) -> Text:
    if col == "state":
        if value is None:
            return Text("⏸ STOP", style=PAUSED_STYLE)
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
    return Text(str(value), justify="right")


def _row_key(key: WorkerKey) -> str:
    slot, ident, gen = key
    return f"{slot}:{ident}:{gen}"


class WorkerTable(DataTable):
    """`show(frame)` fills it; moving the row cursor posts `WorkerSelected`."""

    def __init__(self, *, id: str | None = None) -> None:
        self._programmatic = True  # (DataTable's own __init__ highlights a row)
        self._keys: list[str] = []
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._keys: list[str] = []
        self._by_row: dict[str, WorkerKey] = {}
        self._values: dict[str, tuple[object, ...]] = {}
        self._told: str | None = None  # the selection the last frame carried
        self._programmatic = False
        self._columns: tuple[str, ...] = ()
        self._last: Frame | None = None

    def _set_columns(self) -> None:
        cols = fitting_columns(self.scrollable_content_region.width or 80)
        if cols == self._columns:
            return
        self._columns = cols
        self.clear(columns=True)
        self._keys = []
        for label, key, width in COLUMNS:
            if key in cols:
                self.add_column(label, key=key, width=width)

    def on_resize(self) -> None:
        self._set_columns()
        if self._last is not None and not self._keys:
            self.show(self._last)

    def show(self, frame: Frame) -> None:
        self._last = frame
        self._set_columns()
        snap = frame.snapshot
        workers = [w for w in snap.workers if w.state != "empty"]
        sel = _row_key(frame.selected) if frame.selected else None
        if len(workers) > MAX_ROWS:
            idx = next((i for i, w in enumerate(workers) if _row_key(w.key) == sel), 0)
            start = max(0, min(idx - MAX_ROWS // 2, len(workers) - MAX_ROWS))
            workers = workers[start : start + MAX_ROWS]
        keys = [_row_key(w.key) for w in workers]
        cols = self._columns
        rows = [
            tuple(_values(w, snap.interval_s, w.pid in frame.paused_pids)[c] for c in cols)
            for w in workers
        ]
        self._programmatic = True  # cursor moves below are ours, not the user's
        try:
            if keys != self._keys:
                self.clear()
                self._values.clear()
                for k, values in zip(keys, rows, strict=True):
                    self.add_row(*(_cell(c, v) for c, v in zip(cols, values, strict=True)), key=k)
                    self._values[k] = values
                self._keys = keys
                self._by_row = {k: w.key for k, w in zip(keys, workers, strict=True)}
                self._told = None  # place the cursor on the selection again
            else:
                for k, values in zip(keys, rows, strict=True):
                    old = self._values.get(k)
                    if old == values:
                        continue
                    for j, (col, value) in enumerate(zip(cols, values, strict=True)):
                        if old is None or old[j] != value:
                            self.update_cell(k, col, _cell(col, value))
                    self._values[k] = values
            # Follow the app's selection only when it changed (the grid moved it): a frame
            # drawn between a key press and its WorkerSelected must not undo the key.
            if sel is not None and sel != self._told and sel in self._keys:
                row = self._keys.index(sel)
                if self.cursor_row != row:
                    self.move_cursor(row=row, animate=False, scroll=True)
            self._told = sel
        finally:
            self._programmatic = False

    def _highlight_row(self, row_index: int) -> None:
        super()._highlight_row(row_index)
        if self._programmatic or not 0 <= row_index < len(self._keys):
            return
        self.post_message(WorkerSelected(self._by_row[self._keys[row_index]]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()  # the app hears WorkerSelected instead
