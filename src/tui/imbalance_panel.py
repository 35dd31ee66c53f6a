"""Imbalance: Jain's index and top share for accepts, open connections and CPU over the
window, each with a sparkline of its recent Jain's index (on a fixed 0..1 scale: a full
bar is perfectly even); for accepts also the top share over the whole run, which stays
after a burst has left the window (the window's row then reads '-')."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from judging.analysis import run_accepts
from judging.diagnosis import SKEW_MIN_MAX_OVER_MEAN as SKEW  # drawn red from there
from judging.diagnosis import enough_to_judge

from .drawing import jain_style, spark
from .frame import Frame
from .quiet_static import QuietStatic

LABELS = (("accepts", "accepts"), ("connections", "conns"), ("cpu", "CPU"))
WIDTHS = (7, 4, 4)  # label, Jain, top share; then the top worker and the run's top share,
# as wide as their text ("w3", or an attached server's "pid 28201": never cut to "pid…")
MIN_SPARK = 6  # narrower than this: no sparkline column


Row = tuple[str, float | None, float | None, bool, bool, str, str, bool, tuple[float | None, ...]]
"""label, Jain, top share, judged, hot, top worker, run top, run hot, recent Jains: plain
values, compared with the last frame's so that an unchanged panel is not drawn again."""


class ImbalancePanel(QuietStatic):
    def show(self, frame: Frame) -> None:
        snap = frame.snapshot
        room = self.content_region.width or 40
        self.set_subtitle(f"window {snap.window_s:g} s")
        # a column very short of rows (tui.layout level 3): the accepts row alone
        labels = LABELS[:1] if frame.compact >= 3 else LABELS
        rows = [_row(frame, metric, label, room) for metric, label in labels]
        who = max((len(r[5]) for r in rows), default=0)
        run = max([len("run top")] + [len(r[6]) for r in rows])
        base = sum(WIDTHS) + 3  # and one space after each column
        if base + who + 1 + run > room:  # narrow: the run's column goes first, whole
            run = 0
        if base + who > room:
            who = 0
        width = room - base - (who + 1 if who else 0) - (run + 1 if run else 0)
        width = width if width >= MIN_SPARK else 0
        # what the sparkline's points cover, by their times: the last interval times the
        # points read "last 0 s" at a recording's end (its last interval 18 ms)
        shown = frame.history[-width:] if width else ()
        span = shown[-1].time - shown[0].time + (shown[0].interval_s or 0.0) if shown else 0.0
        header = frame.compact < 2
        key = (width, who, run, header, f"{span:.0f}", tuple(rows))
        if key == self._shown:
            return
        table = _table(rows, (who, run, width), span, header)
        self.show_content(table, key=key, height=len(rows) + header)

    def rows(self, compact: int) -> int:
        """Its lines at that compactness (LabScreen shares the column's height)."""
        return 1 if compact >= 3 else len(LABELS) + (compact < 2)


def _short(worker: str | None) -> str:
    return (worker or "").replace("worker ", "w")


def _row(frame: Frame, metric: str, label: str, width: int) -> Row:
    snap = frame.snapshot
    imb = getattr(snap.imbalance, metric)
    jain = imb.jain if imb else None
    top = imb.top_share if imb else None
    judged = enough_to_judge(metric, imb)  # too few events: shown, but not coloured
    hot = judged and imb is not None and (imb.max_over_mean or 0) >= SKEW
    who = _short(imb.top_worker) if imb and top else ""
    values = tuple(
        past.jain if past is not None else None
        for past in (getattr(s.imbalance, metric) for s in frame.history[-width:])
    )
    run = ""
    run_hot = False
    whole = run_accepts(snap) if metric == "accepts" else None
    if whole is not None and whole.top_share is not None:
        run = f"{whole.top_share * 100:.0f}% {_short(whole.top_worker)}"
        run_hot = enough_to_judge("accepts", whole) and (whole.max_over_mean or 0) >= SKEW
    return (label, jain, top, judged, hot, who, run, run_hot, values)


def _table(rows: list[Row], widths: tuple[int, int, int], span: float, header: bool) -> Table:
    """The columns whose width is 0 are left out (a narrow panel)."""
    who_w, run_w, width = widths
    table = Table.grid(padding=(0, 1, 0, 0))
    for w, justify in zip(WIDTHS, ("left", "right", "right"), strict=True):
        table.add_column(width=w, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for w in (who_w, run_w, width):
        if w:
            table.add_column(width=w, no_wrap=True, overflow="crop")
    dim = "dim"
    if header:
        cells = [Text(""), Text("Jain", style=dim), Text("top", style=dim)]
        cells += [Text("")] if who_w else []
        cells += [Text("run top", style=dim)] if run_w else []
        if width:
            cells.append(Text(f"Jain, last {span:.0f} s" if width >= 14 else "Jain", style=dim))
        table.add_row(*cells)
    for label, jain, top, judged, hot, who, run, run_hot, values in rows:
        cells = [
            Text(label),
            Text("-" if jain is None else f"{jain:.2f}", style=jain_style(jain, judged)),
            Text("-" if top is None else f"{top * 100:.0f}%", style="bold red" if hot else ""),
        ]
        cells += [Text(who, style="dim")] if who_w else []
        cells += [Text(run, style="bold red" if run_hot else "")] if run_w else []
        if width:
            line = spark(values, width, lo=0.0, hi=1.0).plain
            cells.append(Text(line, style=jain_style(jain, judged)))
        table.add_row(*cells)
    return table
