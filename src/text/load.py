"""The load generator's figures drawn with rich: the progress bar of a timed run, its live
figures, and the wrk-like summary of a `LoadResult` (`serverscope load`, and the client side
of `serverscope run`)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadgen.result import LoadResult
from loadgen.stats import ERROR_KINDS, LoadStats
from values.units import WAIT_ALARM_MS, ms_wrk


def live_progress(console: Console) -> Progress:
    """The progress bar of a timed run: description, bar, live figures (`live`), elapsed."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[live]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def live_figures(s: LoadStats) -> str:
    errs = s.error_count
    text = f"{s.requests} req  {s.rps:.0f} req/s  p99 {ms_wrk(s.latency_ms.p99)}"
    text += f"  open {s.open_connections}"
    if s.oldest_wait_ms is not None and s.oldest_wait_ms >= WAIT_ALARM_MS:
        text += f"  [red]waiting {s.in_flight}, oldest {s.oldest_wait_ms / 1000:.1f} s[/]"
    if errs:
        text += f"  [red]errors {errs}[/]"
    if s.backlog:
        text += f"  backlog {s.backlog}"
    if s.bottleneck:
        text += f"  [{'bold red' if s.generator_bound else 'yellow'}]{s.bottleneck}[/]"
    return text


def load_summary(console: Console, r: LoadResult) -> None:
    # one function on purpose: the summary's lines in the order they print
    s = r.stats
    console.print(f"Running {r.elapsed:.1f}s test @ {r.url}")
    console.print(f"  {r.level.name}: {r.level.describe()}  (engine {r.engine})", soft_wrap=True)
    t = Table(box=None, padding=(0, 1), pad_edge=True)
    t.add_column("")
    for col in ("p50", "p90", "p99", "p99.9", "max", "mean", "count"):
        t.add_column(col, justify="right")
    rows = [("Latency", r.latency)]
    waiting = s.in_flight + s.backlog
    if waiting and r.latency_all is not None:
        # completed plus the requests still waiting when the run was cut, at their age then
        rows.append(("+ waiting", r.latency_all))
    rows.append(("Connect", r.connect))
    # each request's latency split as hey does (stats.ClientPhases): per request the five
    # add up to its latency; the means add up too, the percentiles need not
    labels = ("  wait", "  connect", "  ttfb", "  read", "  gen delay")
    rows += list(zip(labels, r.phases, strict=True)) if r.phases else []
    for name, h in rows:
        p = h.percentiles()
        values = (p.p50, p.p90, p.p99, p.p999, p.max, h.mean_ms)
        t.add_row(name, *(ms_wrk(v) if h.count else "-" for v in values), str(h.count))
    console.print(t)
    if r.phases:
        console.print(
            "  [dim]phases of each request: wait for a connection + connect (0 when reused) + "
            "time to first byte + read + the generator's delay = its latency[/]",
            soft_wrap=True,
        )
    slow = r.connect.by_second()
    if slow:
        console.print(
            "  [red]Connects by second (SYN retransmits after a dropped handshake): "
            + ", ".join(f"{k + 1} s: {n}" for k, n in enumerate(slow) if n)
            + "[/]"
        )
    console.print(
        f"  {s.requests} requests in {r.elapsed:.2f}s ({s.sent} sent = {s.requests} "
        f"completed + {s.error_count} failed + {s.in_flight} still waiting)"
    )
    if s.in_flight:
        style = "red" if (s.oldest_wait_ms or 0) >= WAIT_ALARM_MS else "yellow"
        console.print(
            f"  [{style}]{s.in_flight} requests still waiting when the run was cut, the oldest "
            f"for {ms_wrk(s.oldest_wait_ms or 0.0)}: counted at that age in '+ waiting'[/]"
        )
    if s.backlog:
        console.print(
            f"  [yellow]{s.backlog} scheduled requests never sent: the server fell behind"
        )
    status = ", ".join(f"{code}: {n}" for code, n in sorted(s.status.items())) or "none"
    console.print(f"  Status: {status}")
    errs = ", ".join(f"{k} {s.errors[k]}" for k in ERROR_KINDS if s.errors.get(k))
    console.print(f"  Errors: {errs}" if errs else "  Errors: none")
    if s.bottleneck:
        share = f" in {s.bottleneck_share:.0%} of its readings" if s.bottleneck_share else ""
        if s.generator_bound:
            cpu = (
                f"; its CPU {s.generator_cpu_s * 1e6 / s.requests:.1f} us per request"
                if s.generator_cpu_s is not None and s.requests
                else ""
            )
            line = f"[bold red]{s.bottleneck}{share}{cpu}: the figures describe the client[/]"
        else:
            line = f"[yellow]{s.bottleneck}{share}[/]"
        console.print("  " + line, soft_wrap=True)
    elif s.bottleneck_share and s.bottleneck_share >= 0.05:  # for a while, not the run
        console.print(
            f"  [yellow]the generator fell behind in {s.bottleneck_share:.0%} of its readings "
            "(1 s windows), not over the run as a whole[/]",
            soft_wrap=True,
        )
    if r.error:
        console.print(f"  [red]{r.error}[/]")
    console.print(f"Requests/sec: {r.rps:10.2f}")
