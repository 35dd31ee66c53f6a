"""The seed's claims table, for the terminal (rich) and as a small hand-written SVG (like
`compare`'s chart: a few dozen shapes, readable in a browser or the README)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from rich.markup import escape as esc
from rich.table import Table

from lab.seed import ClaimResult, SeedRun

DEFAULT_SVG = "serverscope-seed.svg"
_FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
_COLS = (("claim", 250), ("original", 330), ("Python model", 330), ("verdict", 110))
_VERDICT = {True: "confirmed", False: "not confirmed", None: "not measured"}
_COLOUR = {True: "#009E73", False: "#D55E00", None: "#777777"}


def verdict(r: ClaimResult) -> str:
    return _VERDICT[r.confirmed]


def table(run: SeedRun) -> Table:
    t = Table(title="the seed's claims, measured", show_lines=True)
    t.add_column("seed row: claim (rule)")
    t.add_column("original: figure [source]")
    t.add_column("Python model: figure [source]")
    t.add_column("verdict")
    for r in run.results:
        c = r.claim
        anchor = f"\n[dim]anchor: {esc(c.anchor)}[/]" if c.anchor else ""
        t.add_row(
            f"{esc(c.row)}: {esc(c.says)}\n[dim]({esc(c.rule)})[/]{anchor}",
            f"{c.original}: {esc(r.original.text)}\n[dim]{esc(_src(r.original.source))}[/]",
            f"{c.model}: {esc(r.model.text)}\n[dim]{esc(_src(r.model.source))}[/]",
            f"[{_COLOUR[r.confirmed]}]{verdict(r)}[/]",
        )
    return t


def _text(
    x: float, y: float, s: str, *, size: int = 12, fill: str = "#222", bold: bool = False
) -> str:
    weight = " font-weight='bold'" if bold else ""
    return (
        f"<text x='{x}' y='{y}' {_FONT} font-size='{size}' fill='{fill}'{weight}>{escape(s)}</text>"
    )


def svg(results: Sequence[ClaimResult], seconds: float) -> str:
    """The table as SVG: one row per claim, the verdict coloured."""
    row_h, head_h, pad = 46, 52, 12
    width = sum(w for _, w in _COLS) + 2 * pad
    height = head_h + row_h * len(results) + pad
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        _text(pad, 20, f"the seed's claims, measured ({seconds:.0f} s)", size=15, bold=True),
    ]
    x = pad
    for name, w in _COLS:
        out.append(_text(x, 42, name, bold=True))
        x += w
    for i, r in enumerate(results):
        y = head_h + i * row_h
        if i % 2 == 0:
            out.append(
                f"<rect x='{pad / 2}' y='{y}' width='{width - pad}' height='{row_h}' "
                "fill='#f3f3f3'/>"
            )
        c = r.claim
        cells = (
            (f"{c.row}: {c.says}", c.rule),
            (f"{c.original}: {r.original.text}", r.original.source),
            (f"{c.model}: {r.model.text}", r.model.source),
        )
        x = pad
        for (top, bottom), (_, w) in zip(cells, _COLS, strict=False):
            out.append(_text(x, y + 18, _fit(top, w), size=11))
            out.append(_text(x, y + 34, _fit(bottom, w), size=10, fill="#777"))
            x += w
        out.append(_text(x, y + 26, verdict(r), bold=True, fill=_COLOUR[r.confirmed]))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _src(source: str) -> str:
    return f"[{source or '-'}]"


def _fit(s: str, width: int) -> str:
    """Cut `s` to what fits in `width` px at about 6 px a character."""
    n = max(8, width // 6)
    return s if len(s) <= n else s[: n - 1] + "…"
