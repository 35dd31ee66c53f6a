"""The `compare` tables drawn with rich: one row per model, the same load for each; the
request phases in a table of their own (beside the others' twelve columns they squeezed the
diagnoses column to nothing at 140 columns)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from lab.summary import RunSummary
from values.units import dur, opt, pct


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
        "drops",
        "diagnoses seen",
    )
    for c in cols:
        wrap = c == "diagnoses seen"
        t.add_column(c, justify="left" if c in ("model", cols[-1]) else "right", no_wrap=not wrap)
    for s in summaries:
        lat, con = s.latency, s.connect
        errs = sum(s.errors.values())
        one = s.accept_n < 2  # one worker: a spread of one is no spread
        drops = "?" if s.own_drops is None else str(s.own_drops)
        t.add_row(
            s.model_detail + ("" if s.ok else " [red](failed)[/]"),
            f"{s.rps:,.0f}",
            dur(lat.p50, space=False),
            dur(lat.p99, space=False),
            dur(con.p99, space=False) if con.count else "-",
            Text(str(errs), style="red" if errs else ""),
            "-" if one else opt(s.accept_jain, "{:.2f}"),
            f"{s.accept_n} worker" if one else f"{pct(s.accept_top_share)} of {s.accept_n}",
            "-" if one else opt(s.cpu_jain, "{:.2f}"),
            str(s.max_queue),
            Text(drops, style="red" if s.own_drops else ""),
            seen(s),
        )
    t.caption = (
        "acc Jain, top: accepts over the load (top: the busiest worker's share, of how many "
        "workers); queue: longest accept queue; drops: handshakes the model's own listening "
        "sockets dropped (? not read; the namespace-wide ListenOverflows are in --json); "
        "diagnoses seen: when first, and in how many of the run's samples"
    )
    return t


def seen(s: RunSummary) -> str:
    """Each diagnosis seen during the load, when it first fired and in how many of the
    run's samples: 'accept_skew (3 s, 9/80)', so a moment is not read as the whole run."""
    return (
        ", ".join(f"{d.rule} ({d.first_s:.0f} s, {d.samples}/{s.samples})" for d in s.diagnoses)
        or "-"
    )


def phases_table(summaries: Sequence[RunSummary]) -> Table | None:
    """Where the time went, whole run: p50/p99 of each phase per model; None when no model
    measured any ("unknown" for a phase one model did not measure)."""
    if all(h is None for s in summaries for _, h in s.phases()):
        return None
    t = Table(title="where the time went, whole run (p50 / p99)", title_justify="left")
    t.add_column("model", no_wrap=True)
    for c in ("queue wait", "in-server wait", "service"):
        t.add_column(c, justify="right", no_wrap=True)
    for s in summaries:
        cells = []
        for _, h in s.phases():
            if h is None:
                cells.append(Text("unknown", style="dim"))
            elif not h.count:
                cells.append(Text("none", style="dim"))
            else:
                cells.append(Text(f"{dur(h.quantile_ms(0.5))} / {dur(h.quantile_ms(0.99))}"))
        t.add_row(s.model_detail, *cells)
    return t
