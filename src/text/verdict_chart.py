"""The `diff` and `fix` chart: a small hand-written SVG, as `compare`'s (text.chart, whose
palette and font it shares), a few dozen shapes and a few kilobytes.

Layout: one row per figure measured on both sides, a bar for before above a bar for after
(shares and indices on 0..100%, the others on the larger of the two), the change with its
95% interval, p and the verdict at the right, in green (better), red (worse) or grey (no
significant difference, or not tested); then each side's workers' shares of the accepts
and of the CPU as 100% stacked bars, busiest first; the method and the verdict at the foot.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.sax.saxutils import escape

from judging.figures import Scale
from judging.verdict_values import Row, Verdict

from .chart import _FONT, PALETTE

_W = 960
_MARGIN = 20
_LABEL_W = 230
_BAR_W = 300
_BAR_H = 12
_ROW_H = 36
COLOURS = (PALETTE[0], PALETTE[1])  # before, after
VERDICT = {"better": "#009E73", "worse": "#D55E00"}


def _unit_scale(r: Row) -> bool:
    """Shares and indices are drawn on 0..1 (a 96% bar is 96% long)."""
    return r.scale == Scale.DIFFERENCE and r.key != "queue"


def chart_svg(v: Verdict, title: str) -> str:
    rows = [r for r in v.rows if r.before is not None and r.after is not None]
    top = 96
    y_shares = top + len(rows) * _ROW_H + 30
    method = _wrap(v.method(), 150)
    verdict = _wrap(f"verdict: {v.headline()}", 120)
    foot = y_shares + 2 * 64 + 10
    height = foot + 14 * len(method) + 18 * len(verdict) + 16
    out: list[str] = []
    add = out.append
    add(
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{height}' "
        f"viewBox='0 0 {_W} {height}' {_FONT} font-size='12'>"
    )
    add(f"<rect width='{_W}' height='{height}' fill='white'/>")
    add(f"<text x='{_MARGIN}' y='28' font-size='18' font-weight='bold'>{escape(title)}</text>")
    for i, (name, side) in enumerate((("before", v.before), ("after", v.after))):
        y = 50 + 16 * i
        what = ", ".join(x for x in (side.model, side.load) if x) or "unknown setup"
        add(f"<rect x='{_MARGIN}' y='{y - 10}' width='10' height='10' fill='{COLOURS[i]}'/>")
        add(
            f"<text x='{_MARGIN + 16}' y='{y}'>{name}: {escape(side.name)} ({escape(what)}, "
            f"{side.duration_s:.1f} s)</text>"
        )
    for i, r in enumerate(rows):
        _figure_row(add, r, top + i * _ROW_H)
    _shares(
        add,
        "each worker's share of accepts, busiest first",
        v.before.accept_shares,
        v.after.accept_shares,
        y_shares,
    )
    _shares(
        add,
        "each worker's share of CPU, busiest first",
        v.before.cpu_shares,
        v.after.cpu_shares,
        y_shares + 64,
    )
    for j, line in enumerate(method):
        add(
            f"<text x='{_MARGIN}' y='{foot + 14 * j}' fill='#777' font-size='10'>"
            f"{escape(line)}</text>"
        )
    foot += 14 * len(method) + 8
    for j, line in enumerate(verdict):
        add(f"<text x='{_MARGIN}' y='{foot + 18 * j}' font-weight='bold'>{escape(line)}</text>")
    add("</svg>")
    return "\n".join(out) + "\n"


def _figure_row(add: Callable[[str], None], r: Row, y: float) -> None:
    x0 = _MARGIN + _LABEL_W
    add(f"<text x='{x0 - 8}' y='{y + _BAR_H + 4}' text-anchor='end'>{escape(r.label)}</text>")
    values = (r.before or 0.0, r.after or 0.0)
    top = 1.0 if _unit_scale(r) else max(max(values), 1e-12)
    for i, (value, shown) in enumerate(zip(values, r.shown, strict=True)):
        yy = y + i * (_BAR_H + 2)
        w = max(0.0, min(1.0, value / top)) * _BAR_W
        add(
            f"<rect x='{x0}' y='{yy}' width='{w:.1f}' height='{_BAR_H}' fill='{COLOURS[i]}'>"
            f"<title>{'after' if i else 'before'}: {escape(shown)}</title></rect>"
        )
        add(
            f"<text x='{x0 + w + 4:.1f}' y='{yy + _BAR_H - 2}' font-size='10'>"
            f"{escape(shown)}</text>"
        )
    colour = VERDICT.get(r.direction, "#777")
    x1 = x0 + _BAR_W + 110
    add(f"<text x='{x1}' y='{y + 10}' font-size='11'>{escape(r.change_text())}</text>")
    add(
        f"<text x='{x1}' y='{y + 24}' font-size='11' fill='{colour}' font-weight='bold'>"
        f"{escape(r.direction)}{', ' + escape(r.p_text()) if r.tested else ''}</text>"
    )


def _shares(
    add: Callable[[str], None], title: str, b: tuple[float, ...], a: tuple[float, ...], y: float
) -> None:
    add(f"<text x='{_MARGIN}' y='{y}' font-weight='bold'>{escape(title)}</text>")
    for i, shares in enumerate((b, a)):
        yy = y + 10 + i * (_BAR_H + 8)
        x = float(_MARGIN + _LABEL_W)
        width = _BAR_W + 200
        add(
            f"<text x='{x - 8}' y='{yy + _BAR_H - 1}' text-anchor='end'>"
            f"{'after' if i else 'before'}</text>"
        )
        if not shares:
            add(f"<text x='{x}' y='{yy + _BAR_H - 1}' fill='#777'>unknown</text>")
            continue
        for j, share in enumerate(shares):
            w = share * width
            if w <= 0:
                continue
            opacity = 1.0 if j % 2 == 0 else 0.6
            add(
                f"<rect x='{x:.2f}' y='{yy}' width='{w:.2f}' height='{_BAR_H}' "
                f"fill='{COLOURS[i]}' fill-opacity='{opacity}' stroke='white'>"
                f"<title>{100 * share:.1f}%</title></rect>"
            )
            if w >= 30:
                add(
                    f"<text x='{x + w / 2:.1f}' y='{yy + _BAR_H - 2}' text-anchor='middle' "
                    f"fill='white' font-size='9'>{100 * share:.0f}%</text>"
                )
            x += w
        even = _MARGIN + _LABEL_W + width / len(shares)
        add(
            f"<line x1='{even:.1f}' y1='{yy - 2}' x2='{even:.1f}' y2='{yy + _BAR_H + 2}' "
            "stroke='black' stroke-width='2'/>"
        )


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def write_svg(path: str, v: Verdict, title: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(chart_svg(v, title))
