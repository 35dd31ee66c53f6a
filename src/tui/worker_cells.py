"""What the worker table's cells show: one row of plain values per worker (cheap to
compare from one frame to the next) and the rich Text of a cell from its value.

The columns have fixed widths (an update never resizes one); at 80 columns the most
useful ones are kept (PRIORITY), so the accepts column stays where it matters.
"""

from __future__ import annotations

from rich.text import Text

from values.snapshot import GLYPHS, WorkerSample
from values.units import mib, num

from .drawing import PAUSED_STYLE, STATE_STYLE, bar, fill_style
from .frame import rate

PRIORITY = ("slot", "state", "cpu", "conns", "tot", "acc", "pid", "req", "rss")  # kept first
# attach: no scoreboard slots (# is "-" or a thread count), so the pid is what names a row
ATTACH_PRIORITY = ("pid", "state", "cpu", "conns", "tot", "acc", "req", "slot", "rss")
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
# the # column of non-workers (a thread row: "·", under its process)
ROLE_MARK = {"listener": "L", "master": "M", "helper": "H"}
SHORT = {
    "keepalive": "keep",
    "waiting": "wait",
    "starting": "start",
    "reading": "read",
    "working": "work",
    "writing": "write",
    "closing": "close",
    "unknown": "?",
    "stopped": "STOP",
}
PAUSED_THREAD = "paused-process"  # the state value of a thread row whose process is paused


def fitting_columns(width: int, priority: tuple[str, ...] = PRIORITY) -> tuple[str, ...]:
    """The columns that fit in `width` cells, most useful first, in display order."""
    widths = {key: w + PAD for _, key, w in COLUMNS}
    keep: set[str] = set()
    used = 1  # the vertical scrollbar
    for key in priority:
        if used + widths[key] <= width or not keep:
            keep.add(key)
            used += widths[key]
    return tuple(key for _, key, _w in COLUMNS if key in keep)


def short_count(n: int | None) -> str:
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


def slot(w: WorkerSample, threads: int = 0) -> str:
    """The # column: the slot of a worker; L0 (listener of child 0), M (master), H;
    `8t` for an attached process with 8 thread rows (folded under it, t unfolds them)."""
    mark = "·" if w.folded else ROLE_MARK.get(w.role)
    if mark is None:
        if w.slot is not None:
            return str(w.slot)
        return ("99+" if threads > 99 else f"{threads}t") if threads else "-"
    return f"{mark}{w.group}" if mark == "L" and w.group >= 0 else mark


def row_values(
    w: WorkerSample, interval: float | None, paused: bool, accepts: int = 0, threads: int = 0
) -> dict[str, object]:
    """What each cell shows, as plain values: cheap to compare from one frame to the next,
    so only rows whose values changed are rendered again. `accepts`: all the rows' accepts
    since they started, the denominator of this row's share."""
    total = w.accepts_total
    share = None if total is None or not accepts else round(total / accepts, 2)
    return {
        "slot": slot(w, threads),
        "pid": str(w.tid if w.is_thread else w.pid),
        # paused: a signal stops the whole process, so a thread row says its process is
        # stopped ("⏸ PROC": every thread of that pid shows it), a process row "⏸ STOP"
        "state": (PAUSED_THREAD if w.is_thread else None) if paused else w.state,
        "cpu": None if w.cpu_percent is None else round(w.cpu_percent),
        "conns": num(w.connections),
        "tot": (short_count(total), share),
        "acc": num(rate(w.accepts, interval)),
        "req": num(rate(w.requests, interval)),
        "rss": mib(w.rss_bytes),
    }


def cell_text(col: str, value: object) -> Text:
    """The Text of one cell from its value (as `row_values` made it)."""
    if col == "state":
        return _state_text(value)
    if col == "cpu":
        return _cpu_text(value if isinstance(value, int) else None)
    if col == "tot" and isinstance(value, tuple):
        return _accepts_text(*value)
    return Text(str(value), justify="right")


def _state_text(value: object) -> Text:
    if value is None:
        return Text("⏸ STOP", style=PAUSED_STYLE)
    if value == PAUSED_THREAD:
        return Text("⏸ PROC", style=PAUSED_STYLE)
    state = str(value)
    glyph = GLYPHS.get(state, "?")
    return Text(f"{glyph} {SHORT.get(state, state)}", style=STATE_STYLE.get(state, ""))


def _cpu_text(percent: int | None) -> Text:
    text = Text()
    if percent is None:
        text.append(" " * CPU_BAR + "    -")
    else:
        frac = percent / 100.0
        text.append_text(bar(frac, CPU_BAR, fill_style(frac)))
        text.append(f"{percent:4d}%")
    return text


def _accepts_text(count: str, share: float | None) -> Text:
    """The row's accepts since it started, after a bar of its share of all the rows'."""
    text = Text()
    if share is None:
        text.append(" " * SHARE_BAR)
    else:
        text.append_text(bar(share, SHARE_BAR, "bold red" if share >= 0.5 else "cyan"))
    text.append(f"{count:>{WIDTH['tot'] - SHARE_BAR}}")
    return text
