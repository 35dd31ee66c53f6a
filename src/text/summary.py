"""The run summary drawn with rich (`serverscope run`, and each model of `compare`): the
client's latency table (the `load` command's), the server's figures over the load (what
followed it, the teardown, on a line of its own),
a per-worker table and the diagnoses seen. Where the time went (queue wait, in-server
wait, service) is three rows of the server table, "not measured" when unknown."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from judging.stuck import event_line
from lab.summary import RunSummary
from plumbing.loghist import LogHist
from values.units import PAST_LIMIT_NOTE, dur, opt, pct

from .load import load_summary


def render_summary(console: Console, s: RunSummary, *, max_workers: int = 16) -> None:
    # one function on purpose: the summary's sections in the order they print
    console.print(Text(f"{s.model_detail} under {s.level.name}", style="bold"))
    for line in s.faults:
        console.print(Text(f"fault: {line}", style="magenta"))
    if s.result is not None:
        load_summary(console, s.result)  # the `load` command's latency table
    t = Table(title="server", title_justify="left", box=None, padding=(0, 1), show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row(
        "accept imbalance",
        f"Jain {opt(s.accept_jain, '{:.2f}')}  top share {pct(s.accept_top_share)}"
        f" ({s.accept_top_worker or '-'})  max/mean {opt(s.accept_max_over_mean, '{:.1f}')}"
        f"  over {s.total_accepts} accepts of {_workers(s.accept_n)} during the load"
        if s.accept_n != 1
        else f"one worker: {s.total_accepts} accepts during the load (no spread to measure)",
    )
    t.add_row(
        "CPU imbalance", f"Jain {opt(s.cpu_jain, '{:.2f}')}  top share {pct(s.cpu_top_share)}"
    )
    q = f"{s.max_queue}" + (f" / limit {s.queue_limit}" if s.queue_limit else "")
    if s.queue_limit and s.max_queue > s.queue_limit:
        q += f" ({PAST_LIMIT_NOTE})"
    if s.max_queue_listener != s.max_queue:
        q += f"  (longest single queue {s.max_queue_listener})"
    if s.full_samples:
        q += f"  full in {s.full_samples} samples"
    t.add_row("max accept queue", Text(q, style="bold red" if s.full_samples else ""))
    own = "unknown (not read)" if s.own_drops is None else str(s.own_drops)
    t.add_row(
        "dropped handshakes",
        Text(f"{own}  (at its own listening sockets)", style="bold red" if s.own_drops else ""),
    )
    t.add_row(
        "ListenOverflows",
        Text(
            f"{s.overflows}  (ListenDrops {s.drops}; namespace-wide counters: every socket "
            "on the host adds to them)",
            style="dim",
        ),
    )
    if s.master_cpu_max is not None:
        t.add_row(
            "master CPU",
            f"mean {s.master_cpu_mean:.0f}%  max {s.master_cpu_max:.0f}% of one core",
        )
    if s.host_cpu_mean is not None:
        cores = f" of {s.cpu_count * 100}%" if s.cpu_count else ""
        t.add_row("host CPU", f"mean {s.host_cpu_mean:.0f}%{cores}")
    if s.spawns or s.deaths:
        t.add_row("workers", f"{s.spawns} spawned, {s.deaths} died during the run")
    for label, value in phase_rows(s):
        t.add_row(label, value)
    console.print(t)
    if s.workers:
        table, notes = _worker_table(s, max_workers)
        console.print(table)
        for note in notes:  # below the table, unwrapped (a caption wraps to its width)
            console.print(Text(note, style="dim"))
    if s.diagnoses:
        console.print(Text("diagnoses seen", style="bold"))
        for d in s.diagnoses:
            style = "bold red" if d.severity == "critical" else "yellow"
            console.print(
                Text(f"  {d.first_s:5.1f}s  ", style="dim")
                + Text(d.message, style=style)
                + Text(f"  ({d.samples} samples)", style="dim")
            )
    else:
        console.print("diagnoses seen: none")
    _stuck(console, s)
    _teardown(console, s)
    if s.server_died:
        console.print(Text(f"server died: {s.server_error}", style="bold red"))
    if s.load_error:
        console.print(Text(f"load failed: {s.load_error}", style="bold red"))
    if s.interrupted:
        console.print(Text("interrupted: the run was cut short", style="yellow"))


def _stuck(console: Console, s: RunSummary, shown: int = 8) -> None:
    """The stuck workers' stacks taken by themselves: who, in what, where (the JSON has
    the whole stacks)."""
    if not s.stuck_episodes:
        return
    took = len(s.stuck)
    console.print(
        Text(f"stuck workers: {s.stuck_episodes} episodes, {took} stacks taken", style="bold")
    )
    for c in s.stuck[:shown]:
        console.print(Text(f"  {event_line(c, c.time)}"))
    if took > shown:
        console.print(Text(f"  ... {took - shown} more (--json lists them all)", style="dim"))


def _workers(n: int) -> str:
    return "1 worker" if n == 1 else f"{n} workers"


def _teardown(console: Console, s: RunSummary) -> None:
    """After the load: what the server did then, apart and labelled (no finding of the run)."""
    if s.teardown_from_s is None or not (s.teardown_accepts or s.teardown_diagnoses):
        return
    span = f"{s.teardown_from_s:.1f}-{s.teardown_to_s or s.teardown_from_s:.1f}s"
    console.print(
        Text(
            f"after the load ({span}, teardown: not in the figures above): "
            f"{s.teardown_accepts} accepts as the queue drained",
            style="dim",
        )
    )
    for d in s.teardown_diagnoses:
        console.print(Text(f"  {d.first_s:5.1f}s  teardown: {d.message}", style="dim"))


def _worker_table(s: RunSummary, max_rows: int) -> tuple[Table, list[str]]:
    """One row per worker, and per listener (event's: they take the accepts); a master, a
    helper or an attached process's thread rows are not workers: named in the caption,
    never counted as workers. Requests the server counts none of read "unknown", never 0
    (apache:prefork served 122,740 requests and read 0 for each worker)."""
    t = Table(title="per worker, during the load", title_justify="left")
    workers = [w for w in s.workers if w.role in ("worker", "listener")]
    known = any(w.requests is not None for w in workers)
    cols = ("worker", "pid", "accepts", "share", "requests", "CPU s")
    for col in cols if known else tuple(c for c in cols if c != "requests"):
        t.add_column(col, justify="left" if col == "worker" else "right")
    total = s.total_accepts
    rows = sorted(workers, key=lambda w: -w.accepts)[:max_rows]
    for w in sorted(rows, key=lambda w: (w.slot if w.slot is not None else 1 << 30, w.tid)):
        share = w.accepts / total if total else 0.0
        bar = "█" * round(share * 20)
        cells: list[str | Text] = [
            w.label + ("" if w.alive_at_end else " (gone)"),
            str(w.pid if w.kind == "process" else f"{w.pid}/{w.tid}"),
            str(w.accepts),
            f"{100 * share:3.0f}% {bar}",
        ]
        if known:
            cells.append(Text("unknown", style="dim") if w.requests is None else str(w.requests))
        t.add_row(*cells, f"{w.cpu_s:.2f}")
    notes = []
    if len(workers) > max_rows:
        n = len(s.serving)
        listeners = len(workers) - n
        also = f" and {listeners} listener{'s' * (listeners > 1)}" if listeners else ""
        notes.append(f"the {max_rows} busiest of {n} worker{'s' * (n != 1)}{also}")
    if not known:
        notes.append("requests per worker: unknown (this server counts none we read)")
    apart = _not_workers(s)
    if apart:
        notes.append(f"not workers, not shown: {apart}")
    return t, notes


def _not_workers(s: RunSummary) -> str:
    """'the master (pid 21132), 104 threads of the worker processes'."""
    parts = []
    for role, name in (("master", "master"), ("helper", "helper")):
        rows = [w for w in s.workers if w.role == role and not w.folded]
        if len(rows) == 1:
            parts.append(f"the {name} (pid {rows[0].pid})")
        elif rows:
            parts.append(f"{len(rows)} {name}s")
    threads = sum(w.folded for w in s.workers)
    if threads:
        parts.append(f"{threads} threads of the worker processes (counted in their rows)")
    return ", ".join(parts)


PHASE_UNITS = {"queue wait": "connections", "in-server wait": "requests", "service": "requests"}


def phase_rows(s: RunSummary) -> list[tuple[str, Text]]:
    """The run's three phases, one row each: p50 p90 p99 max and how many; one row saying
    "not measured" when none of them was (an unmeasured one among measured ones: "unknown")."""
    phases = s.phases()
    if all(h is None for _, h in phases):
        return [("request phases", Text("not measured for this server", style="dim"))]
    return [(label, _phase_text(h, PHASE_UNITS[label])) for label, h in phases]


def _phase_text(h: LogHist | None, unit: str) -> Text:
    if h is None:
        return Text("unknown (not measured)", style="dim")
    if not h.count:
        return Text(f"no {unit} in the run", style="dim")
    return Text(
        f"p50 {dur(h.quantile_ms(0.5))}  p90 {dur(h.quantile_ms(0.9))}  "
        f"p99 {dur(h.quantile_ms(0.99))}  max {dur(h.max_ms)}  over {h.count:,} {unit}"
    )
