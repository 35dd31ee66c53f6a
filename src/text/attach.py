"""Drawing snapshots with rich (for `serverscope attach` and the headless demo); the
sampler never draws."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from lab.units import mib, opt
from telemetry.snapshot import Severity, Snapshot, WorkerSample

MAX_ROWS = 40  # workers shown; the rest are summarised in one line


def render(snap: Snapshot) -> Group:
    """The snapshot as rich renderables: its head line, the listeners, the workers, the
    imbalance line and the diagnoses."""
    live = snap.live_entities
    parts: list[RenderableType] = [_head(snap), _listeners(snap), _workers(live)]
    if len(live) > MAX_ROWS:
        parts.append(Text(f"... and {len(live) - MAX_ROWS} more workers"))
    imb = _imbalance(snap)
    if imb:
        parts.append(Text(f"imbalance over {snap.window_s:g} s  ") + imb)
    for d in snap.diagnoses:
        style = "bold red" if d.severity == Severity.CRITICAL else "yellow"
        parts.append(Text(f"! {d.message}", style=style))
    return Group(*parts)


def _head(snap: Snapshot) -> Text:
    m = snap.model
    head = Text()
    if m is not None:
        head.append(f"{m.name}", style="bold")
        head.append(f"  root pid {m.root_pid}")
        head.append(f"  master CPU {opt(m.master_cpu_percent)}%")
        head.append(f"  {m.processes} processes, {m.threads} threads")
    if snap.host is not None:
        head.append(f"  host CPU {opt(snap.host.cpu_percent)}% of {snap.host.cpu_count * 100}%")
    if snap.kernel is not None:
        k = snap.kernel
        head.append(
            f"\nListenOverflows +{opt(k.overflows_delta)}  ListenDrops +{opt(k.drops_delta)}"
            "  (namespace-wide)"
        )
    return head


def _listeners(snap: Snapshot) -> Table:
    lt = Table(title="listeners", title_justify="left", expand=False)
    for col in ("#", "address", "port", "queue", "limit", "SYN_RECV", "source"):
        lt.add_column(col, justify="right" if col not in ("address", "source") else "left")
    for ln in snap.listeners:
        style = "bold red" if ln.full else ("yellow" if ln.queue else "")
        lt.add_row(
            str(ln.index),
            ln.address,
            str(ln.port),
            Text(str(ln.queue), style=style),
            opt(ln.limit),
            opt(ln.syn_recv),
            ln.source,
        )
    return lt


def _workers(live: Sequence[WorkerSample]) -> Table:
    wt = Table(title="workers", title_justify="left")
    for col in (
        "worker",
        "pid",
        "tid",
        "kind",
        "state",
        "CPU %",
        "RSS MiB",
        "conns",
        "acc/int",
        "acc total",
        "req total",
    ):
        wt.add_column(col, justify="left" if col in ("worker", "kind", "state") else "right")
    for w in live[:MAX_ROWS]:
        name = w.label if w.slot is not None else (w.name or "-")
        wt.add_row(
            name if w.is_worker else f"{name} ({w.role})",
            str(w.pid),
            str(w.tid),
            w.kind,
            f"{w.glyph} {w.state}",
            opt(w.cpu_percent, "{:.1f}"),
            mib(w.rss_bytes, unit=""),
            opt(w.connections),
            opt(w.accepts),
            opt(w.accepts_total),
            opt(w.requests_total),
        )
    return wt


def _imbalance(snap: Snapshot) -> Text:
    imb = Text()
    for name, i in snap.imbalance.items():
        if i is None:
            continue
        imb.append(f"{name}: ")
        if i.jain is None:
            imb.append("no events  ")
        else:
            imb.append(
                f"Jain {i.jain:.2f} top {100 * (i.top_share or 0):.0f}% "
                f"max/mean {i.max_over_mean:.1f}  "
            )
    return imb
