"""`serverscope compare`: several models in turn under the same load, a table and an SVG chart.

The chart is a small hand-written SVG rather than matplotlib (a heavy dependency for four
bar charts) or rich's `save_svg` (a screenshot of terminal text: blocky bars and a fixed
monospace grid). Hand-written, it is a few dozen shapes: real proportional bars, crisp at
any size, readable in a browser or a README, and the file stays a few kilobytes.

Layout: three bar panels side by side (throughput, p99 latency, top share of accepts),
one bar per model in the model's colour; under them one row per model with its workers'
accept shares as a 100% stacked bar (even segments: even distribution; one wide segment:
skew), the even share marked, and Jain's index beside it.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from dataclasses import fields
from typing import Any
from xml.sax.saxutils import escape

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loadgen import cli as loadgen_cli
from loadgen.levels import LoadError, LoadLevel
from servers import models
from servers.config import ConfigError, ServerConfig
from servers.supervisor import ServerError

from . import headless
from .headless import RunSummary

DEFAULT_SVG = "serverscope-compare.svg"

# colour-blind-safe palette (Okabe-Ito), one per model in the order given
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")


# -- configs --------------------------------------------------------------------------------


def parse_models(text: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; one-line ConfigError for unknown or missing models."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--models: give at least one model, e.g. --models many_accepts,cluster")
    for name in names:
        try:
            models.spec(name)
        except ModuleNotFoundError:
            raise ConfigError(f"model {name!r} is not available in this build yet") from None
    if len(set(names)) != len(names):
        raise ConfigError("--models: a model is named twice")
    return names


def config_for(model: str, base: ServerConfig) -> tuple[ServerConfig, list[str]]:
    """`base` (the knobs given on the command line) applied to `model`: knobs the model
    does not have are left at their defaults (and named, so the table can say so)."""
    spec = models.spec(model)
    default = ServerConfig()
    changes: dict[str, object] = {"model": model}
    dropped = []
    for f in fields(ServerConfig):
        name = f.name
        if name in models.COMMON_KNOBS or name in spec.knobs:
            continue
        if getattr(base, name) != getattr(default, name):
            changes[name] = getattr(default, name)
            dropped.append("--" + name.replace("_", "-"))
    return base.with_(**changes), dropped


# -- running --------------------------------------------------------------------------------


def compare(
    names: Sequence[str],
    base: ServerConfig,
    level: LoadLevel,
    console: Console,
    *,
    period: float = 0.25,
    stop: threading.Event | None = None,
) -> list[RunSummary]:
    """Each model in turn under `level`; a model that fails to start is reported and skipped."""
    stop = stop or threading.Event()
    out = []
    for i, name in enumerate(names):
        if stop.is_set():
            break
        config, dropped = config_for(name, base)
        if dropped:
            console.print(f"[dim]{name}: has no {', '.join(dropped)}; left at its default[/]")
        try:
            summary = headless.progress_run(
                console,
                config,
                level,
                title=f"[{i + 1}/{len(names)}] {name}",
                period=period,
                stop=stop,
            )
        except (ServerError, ConfigError, LoadError) as e:
            console.print(f"[red]{name}: could not start: {e}[/]")
            continue
        out.append(summary)
        status = "ok" if summary.ok else "[red]failed[/]"
        console.print(
            f"{name}: {summary.rps:,.0f} req/s, p99 {_ms(summary.latency.p99)}, "
            f"accept top share {_pct(summary.accept_top_share)}  {status}"
        )
    return out


# -- the table ------------------------------------------------------------------------------


def _ms(v: float) -> str:
    return f"{v / 1000:.2f}s" if v >= 1000 else f"{v:.1f}ms"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _f2(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(summaries: Sequence[RunSummary]) -> Table:
    t = Table(title="compare", title_justify="left")
    cols = (
        "model",
        "req/s",
        "p50",
        "p99",
        "conn p99",
        "errors",
        "acc Jain",
        "top",
        "CPU Jain",
        "queue",
        "ovf*",
        "diagnoses seen",
    )
    for c in cols:
        wrap = c == "diagnoses seen"
        t.add_column(c, justify="left" if c in ("model", cols[-1]) else "right", no_wrap=not wrap)
    for s in summaries:
        lat, con = s.latency, s.connect
        errs = sum(s.errors.values())
        t.add_row(
            s.model_detail + ("" if s.ok else " [red](failed)[/]"),
            f"{s.rps:,.0f}",
            _ms(lat.p50),
            _ms(lat.p99),
            _ms(con.p99) if con.count else "-",
            Text(str(errs), style="red" if errs else ""),
            _f2(s.accept_jain),
            _pct(s.accept_top_share),
            _f2(s.cpu_jain),
            str(s.max_queue),
            Text(str(s.overflows), style="red" if s.overflows else ""),
            ", ".join(s.rules_seen()) or "-",
        )
    t.caption = (
        "queue: longest accept queue; top: top share of accepts; * ListenOverflows over the "
        "run, namespace-wide (every socket adds to it)"
    )
    return t


def to_json(summaries: Sequence[RunSummary], level: LoadLevel) -> dict[str, Any]:
    return {
        "level": level.name,
        "level_detail": level.describe(),
        "duration_s": level.duration,
        "models": [s.to_json_dict() for s in summaries],
    }


# -- the chart ------------------------------------------------------------------------------

_W = 960
_PANEL_GAP = 24
_MARGIN = 20
_LABEL_W = 110  # model names left of the bars
_BAR_H = 18
_BAR_GAP = 8
_FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"


def _nice_max(x: float) -> float:
    if x <= 0:
        return 1.0
    import math

    p = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if x <= m * p:
            return m * p
    return 10 * p


def _num(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.2g}"


def chart_svg(summaries: Sequence[RunSummary], level: LoadLevel) -> str:
    """The comparison as an SVG document (a string)."""
    n = len(summaries)
    colours = [PALETTE[i % len(PALETTE)] for i in range(n)]
    out: list[str] = []
    add = out.append
    panel_w = (_W - 2 * _MARGIN - _LABEL_W - 2 * _PANEL_GAP) / 3
    top = 70
    bars_h = n * (_BAR_H + _BAR_GAP)
    panels = (
        ("throughput (req/s)", [s.rps for s in summaries], _num),
        ("p99 latency (ms)", [s.latency.p99 for s in summaries], _num),
        (
            "top share of accepts",
            [s.accept_top_share or 0.0 for s in summaries],
            lambda v: f"{100 * v:.0f}%",
        ),
    )
    y_workers = top + 24 + bars_h + 50
    row_h = 34
    height = int(y_workers + 24 + n * row_h + 40)
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
            nworkers = len(summaries[i].workers)
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
    # per-worker accept shares
    add(
        f"<text x='{_MARGIN}' y='{y_workers}' font-weight='bold'>each worker's share of "
        "accepts over the whole run (one segment per worker, widest first; the tick marks "
        "an even share)</text>"
    )
    bar_x = _MARGIN + _LABEL_W
    bar_w = _W - 2 * _MARGIN - _LABEL_W - 150
    for i, s in enumerate(summaries):
        y = y_workers + 16 + i * row_h
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
        jain = "-" if s.accept_jain is None else f"{s.accept_jain:.2f}"
        add(
            f"<text x='{bar_x + bar_w + 10}' y='{y + _BAR_H - 5}'>"
            f"{nw} worker{'s' * (nw != 1)}, Jain {jain}</text>"
        )
    add(
        f"<text x='{_MARGIN}' y='{height - 12}' fill='#777' font-size='10'>Jain's index: 1 = "
        "perfectly even, 1/n = one worker took everything. Same load for every model, one "
        "after another on the same machine.</text>"
    )
    add("</svg>")
    return "\n".join(out) + "\n"


def write_svg(path: str, summaries: Sequence[RunSummary], level: LoadLevel) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(chart_svg(summaries, level))


# -- the `compare` command ------------------------------------------------------------------


def add_parser(subparsers: Any, add_model_args: headless.ModelArgs) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="run several models in turn under the same load; a table and an SVG chart",
        description="Run each model in turn under the same load preset and print a table "
        "(throughput, latency, connect p99, errors, imbalance, queue, overflows, diagnoses); "
        "save a chart as SVG. Model knobs apply to the models that have them.",
    )
    p.add_argument(
        "--models", required=True, help="comma-separated models, e.g. many_accepts,cluster"
    )
    headless.add_load_args(p)
    p.add_argument("--svg", metavar="FILE", default=DEFAULT_SVG, help=f"chart ({DEFAULT_SVG})")
    p.add_argument("--json", metavar="FILE", help="write every model's summary as JSON to FILE")
    add_model_args(p)
    return p


def command(a: argparse.Namespace, config_from_args: headless.ConfigFromArgs) -> int:
    try:
        level = headless.level_from_args(a)
    except LoadError as e:
        print(f"serverscope compare: {e}", file=sys.stderr)
        return headless.EXIT_START
    try:  # an output that cannot be written is refused before minutes of runs
        loadgen_cli.check_output("--svg", a.svg)
        loadgen_cli.check_output("--json", a.json)
    except OSError as e:
        print(f"serverscope compare: {e}", file=sys.stderr)
        return headless.EXIT_START
    names = parse_models(a.models)  # ConfigError: one line, exit 2 (the CLI's main)
    base = config_from_args(names[0], a)
    console = headless.console_for_output()
    stop = threading.Event()
    old = headless.install_stop_handlers(stop)
    try:
        summaries = compare(names, base, level, console, period=a.period, stop=stop)
    finally:
        headless.restore_handlers(old)
    if not summaries:
        print("serverscope compare: no model ran", file=sys.stderr)
        return headless.EXIT_FAILED
    console.print(table(summaries))
    try:
        write_svg(a.svg, summaries, level)
        console.print(f"chart saved to {a.svg}")
        if a.json:
            headless.write_json(a.json, to_json(summaries, level))
    except OSError as e:
        print(f"serverscope compare: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return headless.EXIT_FAILED
    failed = len(summaries) < len(names) or not all(s.ok for s in summaries)
    return headless.EXIT_FAILED if failed else headless.EXIT_OK
