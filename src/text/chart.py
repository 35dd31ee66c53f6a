"""The `compare` chart: a small hand-written SVG rather than matplotlib (a heavy dependency
for four bar charts) or rich's `save_svg` (a screenshot of terminal text: blocky bars and a
fixed monospace grid). Hand-written, it is a few dozen shapes: real proportional bars, crisp
at any size, readable in a browser or a README, and the file stays a few kilobytes.

Layout: three bar panels side by side (throughput, p99 latency, top share of accepts),
one bar per model in the model's colour; under them one row per model with its workers'
accept shares as a 100% stacked bar (even segments: even distribution; one wide segment:
skew), the even share marked, and Jain's index beside it. When any model's request phases
were measured, a last row of three panels shows where the time went over the
run: queue wait, in-server wait and service time, a bar at p99 with a tick at p50 per model,
on one log scale shared by the three (they span microseconds to seconds); a phase that was
not measured says so instead of drawing a zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

from lab.summary import RunSummary
from loadgen.levels import LoadLevel
from plumbing.loghist import LogHist
from values.units import dur, kilo

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
DEFAULT_SVG = "serverscope-compare.svg"
_W = 960
_PANEL_GAP = 24
_MARGIN = 20
_LABEL_W = 110  # model names left of the bars
_BAR_H = 18
_BAR_GAP = 8
_ROW_H = 34  # a model's row of accept shares
_FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"


def _nice_max(x: float) -> float:
    if x <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if x <= m * p:
            return m * p
    return 10 * p


def chart_svg(summaries: Sequence[RunSummary], level: LoadLevel) -> str:
    """The comparison as an SVG document (a string)."""
    n = len(summaries)
    colours = [PALETTE[i % len(PALETTE)] for i in range(n)]
    out: list[str] = []
    add = out.append
    top = 70
    bars_h = n * (_BAR_H + _BAR_GAP)
    y_workers = top + 24 + bars_h + 50
    height = int(y_workers + 24 + n * _ROW_H + 40)
    y_phases = height - 20
    with_phases = any(h is not None for s in summaries for _, h in s.phases())
    if with_phases:
        height += 24 + bars_h + 50
    add(
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{height}' "
        f"viewBox='0 0 {_W} {height}' {_FONT} font-size='12'>"
    )
    add(f"<rect width='{_W}' height='{height}' fill='white'/>")
    add(
        f"<text x='{_MARGIN}' y='28' font-size='18' font-weight='bold'>"
        f"serverscope compare: {escape(level.name)}, {level.duration:g} s each</text>"
    )
    add(f"<text x='{_MARGIN}' y='48' fill='#555'>{escape(level.describe())}</text>")
    _bar_panels(add, summaries, colours, top)
    _share_rows(add, summaries, colours, y_workers)
    if with_phases:
        _phase_panels(add, summaries, colours, y_phases)
    add(
        f"<text x='{_MARGIN}' y='{height - 12}' fill='#777' font-size='10'>Jain's index: 1 = "
        "perfectly even, 1/n = one worker took everything. Same load for every model, one "
        "after another on the same machine.</text>"
    )
    add("</svg>")
    return "\n".join(out) + "\n"


def _bar_panels(
    add: Callable[[str], None], summaries: Sequence[RunSummary], colours: list[str], top: int
) -> None:
    """Three bar panels side by side (throughput, p99 latency, top share of accepts)."""
    n = len(summaries)
    panel_w = (_W - 2 * _MARGIN - _LABEL_W - 2 * _PANEL_GAP) / 3
    bars_h = n * (_BAR_H + _BAR_GAP)
    panels: tuple[tuple[str, list[float], Callable[[float], str]], ...] = (
        ("throughput (req/s)", [s.rps for s in summaries], kilo),
        ("p99 latency (ms)", [s.latency.p99 for s in summaries], kilo),
        (
            "top share of accepts",
            [s.accept_top_share or 0.0 for s in summaries],
            lambda v: f"{100 * v:.0f}%",
        ),
    )
    # model labels (shared by the three panels)
    for i, s in enumerate(summaries):
        y = top + 24 + i * (_BAR_H + _BAR_GAP)
        add(
            f"<text x='{_MARGIN + _LABEL_W - 8}' y='{y + _BAR_H - 5}' text-anchor='end'>"
            f"{escape(s.model)}</text>"
        )
    for p, (title, values, fmt) in enumerate(panels):
        x0 = _MARGIN + _LABEL_W + p * (panel_w + _PANEL_GAP)
        vmax = 1.0 if p == 2 else _nice_max(max(values, default=0.0))
        add(f"<text x='{x0:.1f}' y='{top + 10}' font-weight='bold'>{escape(title)}</text>")
        add(
            f"<line x1='{x0:.1f}' y1='{top + 18}' x2='{x0:.1f}' y2='{top + 24 + bars_h}' "
            "stroke='#999'/>"
        )
        label_room = 48
        scale = (panel_w - label_room) / vmax
        for i, v in enumerate(values):
            y = top + 24 + i * (_BAR_H + _BAR_GAP)
            w = max(0.0, v * scale)
            add(
                f"<rect x='{x0:.1f}' y='{y}' width='{w:.1f}' height='{_BAR_H}' "
                f"fill='{colours[i]}'><title>{escape(summaries[i].model)}: "
                f"{escape(fmt(v))}</title></rect>"
            )
            add(f"<text x='{x0 + w + 4:.1f}' y='{y + _BAR_H - 5}'>{escape(fmt(v))}</text>")
            nworkers = len(summaries[i].serving)
            if p == 2 and nworkers:  # the even share, 1/n, for comparison
                xe = x0 + scale / nworkers
                add(
                    f"<line x1='{xe:.1f}' y1='{y - 2}' x2='{xe:.1f}' y2='{y + _BAR_H + 2}' "
                    "stroke='black' stroke-width='2'/>"
                )
        axis = f"0 .. {fmt(vmax)}"
        add(
            f"<text x='{x0:.1f}' y='{top + 24 + bars_h + 12}' fill='#777' font-size='10'>"
            f"{escape(axis)}</text>"
        )


def _share_rows(
    add: Callable[[str], None],
    summaries: Sequence[RunSummary],
    colours: list[str],
    y_workers: float,
) -> None:
    """One row per model: its workers' accept shares as a 100% stacked bar, even share ticked."""
    # per-worker accept shares
    add(
        f"<text x='{_MARGIN}' y='{y_workers}' font-weight='bold'>each worker's share of "
        "accepts over the whole run (one segment per worker, widest first; the tick marks "
        "an even share)</text>"
    )
    bar_x = _MARGIN + _LABEL_W
    bar_w = _W - 2 * _MARGIN - _LABEL_W - 150
    for i, s in enumerate(summaries):
        y = y_workers + 16 + i * _ROW_H
        add(
            f"<text x='{bar_x - 8}' y='{y + _BAR_H - 5}' text-anchor='end'>{escape(s.model)}</text>"
        )
        shares = sorted(s.accept_shares(), key=lambda ls: -ls[1])
        if not shares or s.total_accepts == 0:
            add(
                f"<rect x='{bar_x}' y='{y}' width='{bar_w}' height='{_BAR_H}' fill='#eee'/>"
                f"<text x='{bar_x + 6}' y='{y + _BAR_H - 5}' fill='#777'>no accepts counted"
                "</text>"
            )
            continue
        x = float(bar_x)
        for j, (label, share) in enumerate(shares):
            w = share * bar_w
            if w <= 0:
                continue
            opacity = 1.0 if j % 2 == 0 else 0.6
            stroke = " stroke='white' stroke-width='1'" if w > 3 else ""
            add(
                f"<rect x='{x:.2f}' y='{y}' width='{w:.2f}' height='{_BAR_H}' "
                f"fill='{colours[i]}' fill-opacity='{opacity}'{stroke}>"
                f"<title>{escape(label)}: {100 * share:.1f}%</title></rect>"
            )
            if w >= 34:
                add(
                    f"<text x='{x + w / 2:.1f}' y='{y + _BAR_H - 5}' text-anchor='middle' "
                    f"fill='white' font-size='10'>{100 * share:.0f}%</text>"
                )
            x += w
        nw = len(shares)
        even = bar_w / nw
        add(
            f"<line x1='{bar_x + even:.1f}' y1='{y - 3}' x2='{bar_x + even:.1f}' "
            f"y2='{y + _BAR_H + 3}' stroke='black' stroke-width='2'/>"
        )
        jain = "-" if s.accept_jain is None or nw < 2 else f"{s.accept_jain:.2f}"
        add(
            f"<text x='{bar_x + bar_w + 10}' y='{y + _BAR_H - 5}'>"
            f"{nw} worker{'s' * (nw != 1)}, Jain {jain}</text>"
        )


_LOG_LO_MS = 0.01  # the log scale starts at 10 us (below: a sliver)


def _phase_panels(
    add: Callable[[str], None], summaries: Sequence[RunSummary], colours: list[str], top: float
) -> None:
    """Queue wait, in-server wait, service: a bar per model at p99, a tick at p50."""
    # one function on purpose: the three panels' SVG drawn top to bottom
    n = len(summaries)
    panel_w = (_W - 2 * _MARGIN - _LABEL_W - 2 * _PANEL_GAP) / 3
    bars_h = n * (_BAR_H + _BAR_GAP)
    add(
        f"<text x='{_MARGIN}' y='{top}' font-weight='bold'>where the time went, whole run: "
        "bar p99, tick p50 (log scale, shared)</text>"
    )
    top += 16
    p99s = [h.quantile_ms(0.99) or 0.0 for s in summaries for _, h in s.phases() if h is not None]
    hi = 10 ** math.ceil(math.log10(max(max(p99s, default=1.0), 1.0)))
    span = math.log10(hi / _LOG_LO_MS)
    for i, s in enumerate(summaries):
        y = top + 24 + i * (_BAR_H + _BAR_GAP)
        add(
            f"<text x='{_MARGIN + _LABEL_W - 8}' y='{y + _BAR_H - 5}' text-anchor='end'>"
            f"{escape(s.model)}</text>"
        )
    for p, (title, h_of) in enumerate(
        (
            ("queue wait", lambda s: s.queue_wait),
            ("in-server wait", lambda s: s.server_wait),
            ("service", lambda s: s.service),
        )
    ):
        x0 = _MARGIN + _LABEL_W + p * (panel_w + _PANEL_GAP)
        add(f"<text x='{x0:.1f}' y='{top + 10}' font-weight='bold'>{title}</text>")
        add(
            f"<line x1='{x0:.1f}' y1='{top + 18}' x2='{x0:.1f}' y2='{top + 24 + bars_h}' "
            "stroke='#999'/>"
        )
        scale = panel_w - 70

        def x_of(ms: float, x0: float = x0, scale: float = scale) -> float:
            frac = math.log10(max(ms, _LOG_LO_MS) / _LOG_LO_MS) / span
            return x0 + max(1.0, frac * scale)

        for i, s in enumerate(summaries):
            y = top + 24 + i * (_BAR_H + _BAR_GAP)
            h: LogHist | None = h_of(s)
            if h is None or not h.count:
                what = "not measured" if h is None else "none in the run"
                add(f"<text x='{x0 + 4:.1f}' y='{y + _BAR_H - 5}' fill='#777'>{what}</text>")
                continue
            p50, p99 = h.quantile_ms(0.5) or 0.0, h.quantile_ms(0.99) or 0.0
            x99, x50 = x_of(p99), x_of(p50)
            label = f"{s.model}: {title} p50 {dur(p50)}, p99 {dur(p99)}, max {dur(h.max_ms)}"
            add(
                f"<rect x='{x0:.1f}' y='{y}' width='{x99 - x0:.1f}' height='{_BAR_H}' "
                f"fill='{colours[i]}'><title>{escape(label)}</title></rect>"
            )
            add(
                f"<line x1='{x50:.1f}' y1='{y - 2}' x2='{x50:.1f}' y2='{y + _BAR_H + 2}' "
                "stroke='black' stroke-width='2'/>"
            )
            add(f"<text x='{x99 + 4:.1f}' y='{y + _BAR_H - 5}'>{escape(dur(p99))}</text>")
        add(
            f"<text x='{x0:.1f}' y='{top + 24 + bars_h + 12}' fill='#777' font-size='10'>"
            f"{escape(dur(_LOG_LO_MS))} .. {escape(dur(hi))}, log</text>"
        )


def write_svg(path: str, summaries: Sequence[RunSummary], level: LoadLevel) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(chart_svg(summaries, level))
