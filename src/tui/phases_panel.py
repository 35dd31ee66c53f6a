"""Where the time goes: queue wait, in-server wait and service time, p50/p99 over
the analyser's window, for the whole server and the selected worker, plus (when there is
room) a bar of the server's p99 on a log scale from 10 us to 10 s, so the phase that
dominates stands out at a glance (prefork starving: a long queue-wait bar over a sliver
of service).

It draws `Snapshot.window_phases` and the selected worker's `WorkerSample.window_phases`,
which the analyser computed; it subtracts nothing. Unknown is never drawn as zero: a
phase that is not measured reads "unknown" (an attached server's eBPF queue wait comes
without the other two), and when nothing is measured the panel is one line saying why.

On a short screen (< 30 rows, the `-short` layout) the panel is one line, the server's p99
of each phase, and when nothing is measured only its title line saying so: at 80x24 the
right column has one or two spare rows (seen: a four-row table cut the client panel's
latency, connect, waiting and errors lines).
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from plumbing.loghist import LogHist
from values.phases import Phases
from values.snapshot import Snapshot
from values.units import dur

from .drawing import bar
from .frame import Frame
from .quiet_static import QuietStatic

ROWS = (("queue", "queue"), ("server", "server"), ("service", "service"))
WIDTHS = (7, 11, 11)  # label, overall p50/p99, selected worker's p50/p99
LOG_LO_MS, LOG_HI_MS = 0.01, 10_000.0  # the bar's scale: 10 us .. 10 s, log
STYLE = {"queue": "yellow", "server": "magenta", "service": "green"}
MIN_BAR = 6  # narrower than this: no bar column
TITLE = "where the time goes"
SHORT = {"queue": "q", "server": "srv", "service": "svc"}  # one-line labels when narrow
STOPPED = "stopped"  # the source of the empty snapshot a screen draws when nothing runs

Cell = tuple[str, str]  # text, style
Row = tuple[str, Cell, Cell, float | None]  # label, overall, selected, overall p99 (ms)


def why_unmeasured(snap: Snapshot, short: bool = False) -> str:
    """The one line shown in place of the panel when no phase is measured (`short`: the
    panel's title line, all that is left of it on a short screen)."""
    if snap.source == "attach":
        # attach says why its eBPF queue wait is not measured (ModelInfo.queue_note)
        note = getattr(snap.model, "queue_note", None) if snap.model else None
        if note:
            return f"time: {note}" if short else str(note)
        return "time: unknown, attached server" if short else "unknown: attached, no scoreboard"
    if snap.source == STOPPED:
        return "time: no server running" if short else "no server running"
    if snap.source == "supervisor":
        return "time: no phases in scoreboard" if short else "unknown: no phases in scoreboard"
    return "time: not in these snapshots" if short else "not measured in these snapshots"


class PhasesPanel(QuietStatic):
    measured = False  # as last shown

    def show(self, frame: Frame) -> None:
        snap = frame.snapshot
        overall = snap.window_phases
        self.measured = overall is not None
        short = self.screen.has_class("-short")
        one_line = short or frame.compact >= 1  # a short screen, or a column short of rows
        self.set_class(overall is None and short, "-collapsed")
        if overall is None:
            self.set_subtitle(None)
            if short:  # the title line says it all; the body is collapsed
                self._set_title(why_unmeasured(snap, short=True))
                self.show_content(Text(""), height=0)
            else:
                self._set_title(TITLE)
                self.show_content(Text(why_unmeasured(snap), style="dim"), height=1)
            return
        width = self.content_region.width or 32
        method = getattr(snap.model, "queue_method", None) if snap.model else None
        self.set_subtitle(_subtitle(snap.window_s, method, width + 2))
        # in the accept queue now (Recv-Q): when none left it in the window, "none" would
        # say nothing waited while a starved server's queue holds them all
        queued = sum(ln.queue for ln in snap.listeners)
        if one_line:
            self._set_title(f"{TITLE}, p99")
            self.show_content(_line(overall, width, queued), height=1)
            return
        self._set_title(TITLE)
        width -= sum(WIDTHS) + len(WIDTHS)
        barw = width if width >= MIN_BAR else 0
        sel = next((w for w in snap.workers if w.key == frame.selected), None)
        who = sel.label.replace("worker ", "w") if sel is not None else "-"
        mine = sel.window_phases if sel is not None else None
        rows = [_row(overall, mine, name, label, queued) for name, label in ROWS]
        key = (barw, who, tuple(rows))
        if key == self._shown:
            return
        self.show_content(_table(rows, who, barw), key=key, height=("table", len(rows)))

    def rows(self, compact: int) -> int:
        """Its lines at that compactness (LabScreen shares the column's height)."""
        if not self.measured or compact >= 1 or self.screen.has_class("-short"):
            return 0 if self.has_class("-collapsed") else 1
        return len(ROWS) + 1

    def _set_title(self, title: str) -> None:
        if self.border_title != title:
            self.border_title = title


def _subtitle(window_s: float, method: str | None, room: int) -> str:
    """'window 5 s, queue: eBPF tracepoints (first bytes' arrival -> accept)', or as much
    of it as the border has room for, by whole parts (it read 'eBPF tracepoints (firs…')."""
    window = f"window {window_s:g} s"
    if not method:
        return window
    for text in (f"{window}, queue: {method}", f"{window}, queue: {method.split(' (')[0]}"):
        if len(text) <= room - 4:
            return text
    return window


def _line(overall: Phases, width: int, queued: int = 0) -> Text:
    """One line: each phase's p99 over the window ("q 7.0s  srv 40µs  svc 400µs")."""
    long = width >= 40
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, (name, h) in enumerate(overall.items()):
        if i:
            t.append("  ")
        t.append(f"{name if long else SHORT[name]} ", style=STYLE[name])
        if h is None:
            text, style = "?", "dim"
        elif h.count:
            text, style = dur(h.quantile_ms(0.99), space=False), ""
        else:
            text, style = _cell(h, queued if name == "queue" else 0)
        t.append(text, style=style)
    return t


def _cell(h: LogHist | None, queued: int = 0) -> Cell:
    if h is None:
        return ("unknown", "dim")
    if not h.count and queued:
        return (f"{queued} queued", "yellow")  # none left the queue: these are in it still
    if not h.count:
        return ("none", "dim")  # measured: nothing went through it in the window
    p50, p99 = h.quantile_ms(0.5), h.quantile_ms(0.99)
    return (f"{dur(p50, space=False)}/{dur(p99, space=False)}", "")


def _row(overall: Phases, mine: Phases | None, name: str, label: str, queued: int = 0) -> Row:
    h: LogHist | None = getattr(overall, name)
    p99 = h.quantile_ms(0.99) if h is not None and h.count else None
    own = getattr(mine, name) if mine is not None else None
    return (label, _cell(h, queued if name == "queue" else 0), _cell(own), p99)


def _frac(ms: float | None) -> float:
    if ms is None or ms <= 0:
        return 0.0
    span = math.log10(LOG_HI_MS / LOG_LO_MS)
    return min(1.0, max(0.0, math.log10(max(ms, LOG_LO_MS) / LOG_LO_MS) / span))


def _table(rows: list[Row], who: str, barw: int) -> Table:
    table = Table.grid(padding=(0, 1, 0, 0))
    for w, justify in zip(WIDTHS, ("left", "right", "right"), strict=True):
        table.add_column(width=w, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    if barw:
        table.add_column(width=barw, no_wrap=True, overflow="crop")
    dim = "dim"
    mine = f"{who} p50/p99" if len(who) + 8 <= WIDTHS[2] else who  # ("pid 28201 …" was cut)
    head = [Text(""), Text("all p50/p99", style=dim), Text(mine, style=dim)]
    if barw:
        head.append(Text("p99, 10µs..10s" if barw >= 14 else "p99", style=dim))
    table.add_row(*head)
    top = max((p for *_, p in rows if p is not None), default=None)
    for label, (all_text, all_style), (own_text, own_style), p99 in rows:
        style = STYLE[label]
        lead = top is not None and p99 == top and p99 > 0
        cells = [
            Text(label, style=f"bold {style}" if lead else style),
            Text(all_text, style=all_style or ("bold" if lead else "")),
            Text(own_text, style=own_style),
        ]
        if barw:
            cells.append(bar(_frac(p99), barw, style) if p99 is not None else Text(""))
        table.add_row(*cells)
    return table
