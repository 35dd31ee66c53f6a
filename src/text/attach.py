"""Drawing snapshots with rich (for `serverscope attach` and the headless demo); the
sampler never draws."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.text import Text

from judging.diagnosis import enough_to_judge
from values.cgroupcpu import limit_line
from values.findings import Severity
from values.snapshot import Snapshot, WorkerSample, WorkerState
from values.units import PAST_LIMIT_NOTE, mib, opt

from .fit import Column, FitTable, natural_width

MAX_ROWS = 40  # workers shown; the rest are summarised in one line
STATE_STYLE = {WorkerState.STOPPED: "bold reverse red", WorkerState.DEAD: "red"}
# the columns kept first when the console is too narrow for all (80 columns keeps these)
WORKER_PRIORITY = ("worker", "pid", "state", "CPU %", "conns", "acc total", "acc/int")
LISTENER_PRIORITY = ("#", "port", "queue", "limit", "owner", "mechanism", "SYN_RECV")


def render(snap: Snapshot, *, threads: bool = False) -> Group:
    """The snapshot as rich renderables: its head line, the listeners, the workers, the
    imbalance line and the diagnoses. Thread rows (attach) are folded into their process's
    `thr` count unless `threads`. The tables keep the columns that fit the console."""
    live = _rows(snap, threads)
    parts: list[RenderableType] = [_head(snap), _listeners(snap), _workers(live, snap)]
    if len(live) > MAX_ROWS:
        parts.append(Text(f"... and {len(live) - MAX_ROWS} more workers"))
    imb = _imbalance(snap)
    if imb:
        parts.append(Text(f"imbalance over {snap.window_s:g} s  ") + imb)
    for d in snap.diagnoses:
        style = "bold red" if d.severity == Severity.CRITICAL else "yellow"
        parts.append(Text(f"! {d.message}", style=style))
    return Group(*parts)


def wanted_width(snap: Snapshot, *, threads: bool = False) -> int:
    """Columns that draw `render(snap)`'s tables whole (piped output has no width)."""
    return natural_width(Group(), [_listeners(snap), _workers(_rows(snap, threads), snap)])


def _rows(snap: Snapshot, threads: bool) -> tuple[WorkerSample, ...]:
    return tuple(w for w in snap.live_entities if threads or not w.folded)


def _head(snap: Snapshot) -> Text:
    m = snap.model
    head = Text()
    if m is not None:
        head.append(f"{m.name}", style="bold")
        if m.program:
            head.append(f" {m.program}", style="bold")
        head.append(f"  root pid {m.root_pid}")
        head.append(f"  master CPU {opt(m.master_cpu_percent)}%")
        head.append(f"  {m.processes} processes, {m.threads} threads")
        if m.server:
            head.append(f"  looks like {m.server}")
        if m.placement is not None and m.placement.elsewhere:
            head.append(f"\nruns in: {m.placement.describe()}")
        if m.accepts_method:
            head.append(f"\naccepts: {m.accepts_method}", style="bold")
            if m.accepts_note:
                head.append(f" ({m.accepts_note})")
        q = snap.phases.queue if snap.phases else None
        if m.queue_method and q is not None:
            head.append(f"\nqueue wait: {m.queue_method}", style="bold")
            ms = [opt(x, "{:.1f}") for x in (q.quantile_ms(0.5), q.quantile_ms(0.99), q.max_ms)]
            n = q.count
            head.append(f"  p50 {ms[0]} ms  p99 {ms[1]} ms  max {ms[2]} ms  ({n} connections)")
        elif m.queue_note:
            head.append(f"\n{m.queue_note}")
        if m.status:
            head.append(f"\nworker states: {m.status}")
        if m.connections_method:
            head.append(f"\nconnections: {m.connections_method}")
        if m.connections_note:
            head.append(f"\n{m.connections_note}", style="bold yellow")
        if m.access_note:
            head.append(f"\n{m.access_note}", style="bold yellow")
    if snap.host is not None:
        head.append(f"  host CPU {opt(snap.host.cpu_percent)}% of {snap.host.cpu_count * 100}%")
    limit = limit_line(snap.cpu_cgroups, {w.pid for w in snap.live_workers})
    if limit is not None:  # the workers' cgroup: its limit, and the last interval's share
        head.append(f"\n{limit}", style="bold yellow" if "throttled in" in limit else "")
    if snap.kernel is not None:
        k = snap.kernel
        head.append(
            f"\nListenOverflows +{opt(k.overflows_delta)}  ListenDrops +{opt(k.drops_delta)}"
            "  (namespace-wide)"
        )
    return head


def _listeners(snap: Snapshot) -> FitTable:
    names = ("#", "address", "port", "queue", "limit", "SYN_RECV", "source", "owner", "mechanism")
    left = ("address", "source", "owner", "mechanism")
    cols = [Column(n, "left" if n in left else "right") for n in names]
    lt = FitTable("listeners", cols, priority=LISTENER_PRIORITY)
    for ln in snap.listeners:
        style = "bold red" if ln.full else ("yellow" if ln.queue else "")
        lt.rows.append(
            (
                str(ln.index),
                ln.address,
                str(ln.port),
                Text(str(ln.queue), style=style),
                opt(ln.limit),
                opt(ln.syn_recv),
                ln.source,
                " ".join(f"pid {p}" for p in ln.owners) or "-",
                Text(ln.mechanism, style="dim" if ln.spread is None else ""),
            )
        )
    past = next((ln for ln in snap.listeners if ln.past_limit), None)
    if past is not None:  # a true reading: say why, so nobody takes it for a glitch
        lt.notes.append(f"queue {past.queue} > limit {past.limit}: {PAST_LIMIT_NOTE}")
    return lt


def _workers(live: Sequence[WorkerSample], snap: Snapshot) -> FitTable:
    nthreads: dict[int, int] = {}
    for w in snap.workers:
        if w.is_thread and w.slot is None:
            nthreads[w.pid] = nthreads.get(w.pid, 0) + 1
    names = (
        "worker",
        "pid",
        "tid",
        "kind",
        "state",
        "CPU %",
        "RSS MiB",
        "thr",
        "conns",
        "acc/int",
        "acc total",
        "req total",
    )
    left = ("worker", "kind", "state")
    cols = [Column(n, "left" if n in left else "right") for n in names]
    wt = FitTable("workers", cols, priority=WORKER_PRIORITY)
    for w in live[:MAX_ROWS]:
        name = w.label if w.slot is not None else (w.name or "-")
        if w.is_thread and w.slot is None:
            name = f"  └ {name}" + (" (worker)" if w.is_worker else "")
        elif not w.is_worker:
            name = f"{name} ({w.role})"
        wt.rows.append(
            (
                name,
                str(w.pid),
                str(w.tid),
                w.kind,
                Text(f"{w.glyph} {w.state}", style=STATE_STYLE.get(w.state, "")),
                opt(w.cpu_percent, "{:.1f}"),
                mib(w.rss_bytes, unit=""),
                str(nthreads[w.pid]) if w.kind == "process" and w.pid in nthreads else "",
                opt(w.connections),
                opt(w.accepts),
                opt(w.accepts_total),
                opt(w.requests_total),
            )
        )
    return wt


def _imbalance(snap: Snapshot) -> Text:
    """Each index with what it is over; one resting on too few events (judging.skew.
    enough_to_judge: 1 connection on 2 workers reads Jain 0.50) is dim and says so, as the
    TUI leaves it uncoloured."""
    imb = Text()
    for name, i in snap.imbalance.items():
        if i is None:
            continue
        imb.append(f"{name}: ")
        if i.jain is None:
            imb.append("no events  ")
            continue
        few = "" if enough_to_judge(name, i) else ": too few to judge"
        imb.append(
            f"Jain {i.jain:.2f} top {100 * (i.top_share or 0):.0f}% "
            f"max/mean {i.max_over_mean:.1f} ({_over(name, i.total)}{few})  ",
            style="dim" if few else "",
        )
    return imb


def _over(metric: str, total: float) -> str:
    """What an index is over (values.findings.Imbalance.total), in its unit."""
    if metric == "accepts":
        return f"{total:.0f} accepts"
    if metric == "connections":
        return f"{total:.1f} open"
    return f"{total:.2f} CPU s"
