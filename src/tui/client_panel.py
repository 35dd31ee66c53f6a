"""Client: what the load generator sees: throughput (a sparkline of req/s per second, from
zero), latency, connect time, the clients still waiting, errors by kind.

Latency percentiles here include the requests still waiting, at their age so far (see
loadgen/driver.py): completed-only figures read `p99 18.6 ms` 12 s into prefork starvation
while 280 clients were stuck. The `waiting` line counts the requests in flight and the age
of the oldest; it turns red once the oldest has waited WAIT_ALARM_MS (1 s), the point
where a local server's client is plainly stuck (and where SYN retransmits begin).
When handshakes were dropped (a full accept queue), a `connects` line counts the connects
that took about 1 s, 2 s, 3 s ...: the clusters SYN retransmits make (1 s, 3 s, 7 s with
exponential backoff; every second for the first five with Linux 6.7+'s default
net.ipv4.tcp_syn_linear_timeouts = 4, as measured here: 1.00, 2.04, 3.06, 4.08 s)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical

from lab.units import WAIT_ALARM_MS
from loadgen.stats import ERROR_KINDS

from .drawing import ms, num, spark
from .frame import Frame
from .quiet_static import QuietStatic, line_count

SPARK_SECONDS = 60


class ClientPanel(Vertical):
    def compose(self) -> ComposeResult:
        yield QuietStatic(id="client-head")
        yield QuietStatic(id="client-spark")
        yield QuietStatic(id="client-body")

    def show(self, frame: Frame) -> None:
        c = frame.snapshot.client
        head = self.query_one("#client-head", QuietStatic)
        sparkline = self.query_one("#client-spark", QuietStatic)
        body = self.query_one("#client-body", QuietStatic)
        if c is None:
            head.show_content(Text("no load running", style="dim"), height=1)
            sparkline.show_content("", height=1)
            body.show_content(Text("l chooses a load, g runs it", style="dim"), height=1)
            return
        h = Text(no_wrap=True, overflow="ellipsis")
        h.append(f"{num(c.rps)}", style="bold")
        h.append(" req/s  ", style="dim")
        state = "paused" if c.paused else ("running" if c.running else "ended")
        h.append(f"{c.clients} clients, {state}", style="" if c.running else "yellow")
        head.show_content(h, height=1)
        width = sparkline.content_region.width or SPARK_SECONDS
        series = list(c.rps_series[-width:])
        line = spark(series, width, lo=0.0)
        line.stylize("cyan")
        if series:
            line.append(f"  peak {num(max(series))}/s" if len(series) + 14 <= width else "", "dim")
        sparkline.show_content(line, height=1)
        b = Text(no_wrap=True, overflow="ellipsis")
        lat = c.waiting_latency
        b.append("latency ", style="dim")
        b.append(f"p50 {ms(lat.p50 if lat.count else None)}")
        b.append("  p99 ", style="dim")
        b.append(ms(lat.p99 if lat.count else None), style=_slow(lat.p99))
        b.append("\nconnect ", style="dim")
        b.append("p99 ", style="dim")
        cp = c.connect_ms
        b.append(ms(cp.p99 if cp.count else None), style=_slow(cp.p99))
        b.append(f"  open {num(c.open_connections)}", style="dim")
        if c.connect_seconds:  # dropped handshakes: the clusters the SYN retransmits make
            b.append("\nconnects ", style="dim")
            for k, n in enumerate(c.connect_seconds):
                if n:
                    b.append(f"{k + 1}s", style="dim")
                    b.append(f"\u00d7{num(n)} ", style="bold red")
        b.append("\nwaiting ", style="dim")
        b.append_text(_waiting(c.in_flight, c.oldest_wait_ms, c.backlog))
        b.append("\nerrors ", style="dim")
        errs = [(k, c.errors.get(k, 0)) for k in ERROR_KINDS if c.errors.get(k)]
        errs += [(k, v) for k, v in c.errors.items() if k not in ERROR_KINDS and v]
        if not errs:
            b.append("none", style="green")
        for i, (kind, n) in enumerate(errs):
            b.append(" · " if i else "")
            b.append(f"{kind} {n:,}", style="bold red")
        body.show_content(b, height=line_count(b))


def _waiting(in_flight: int, oldest_ms: float | None, unsent: int) -> Text:
    """`280, oldest 12.3 s` (red from 1 s); `-` when the age is unknown (old recordings)."""
    t = Text()
    alarm = oldest_ms is not None and oldest_ms >= WAIT_ALARM_MS
    style = "bold red" if alarm else ""
    t.append(num(in_flight), style=style)
    if unsent:
        t.append(f" (+{num(unsent)} unsent)", style="bold red" if alarm else "yellow")
    if oldest_ms is None:
        t.append(", oldest -" if in_flight else "", style="dim")
    else:
        t.append(", oldest ", style=style or "dim")
        t.append(f"{oldest_ms / 1000:.1f} s" if oldest_ms >= 1000 else ms(oldest_ms), style=style)
    return t


def _slow(value_ms: float) -> str:
    if value_ms >= 900:  # SYN retransmits start at ~1 s: accept-queue overflow
        return "bold red"
    if value_ms >= 100:
        return "yellow"
    return ""
