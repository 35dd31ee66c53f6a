"""The `compare` table drawn with rich: one row per model, the same load for each."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from lab.summary import RunSummary
from lab.units import ms_short, opt, pct
from telemetry.analysis import dur


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
        "p99 q/srv/svc",
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
            ms_short(lat.p50),
            ms_short(lat.p99),
            ms_short(con.p99) if con.count else "-",
            Text(str(errs), style="red" if errs else ""),
            opt(s.accept_jain, "{:.2f}"),
            pct(s.accept_top_share),
            opt(s.cpu_jain, "{:.2f}"),
            str(s.max_queue),
            Text(str(s.overflows), style="red" if s.overflows else ""),
            phase_p99s(s),
            ", ".join(s.rules_seen()) or "-",
        )
    t.caption = (
        "queue: longest accept queue; top: top share of accepts; * ListenOverflows over the "
        "run, namespace-wide (every socket adds to it); p99 q/srv/svc: the run's queue wait, "
        "in-server wait and service time at p99 (? unknown)"
    )
    return t


def phase_p99s(s: RunSummary) -> str:
    """ "4.2s/80µs/1.5ms": the run's three phases at p99; "-" when none was measured, "?"
    for one unknown among measured ones."""
    phases = [h for _, h in s.phases()]
    if all(h is None for h in phases):
        return "-"
    return "/".join(
        "?" if h is None else dur(h.quantile_ms(0.99), space=False) if h.count else "-"
        for h in phases
    )
