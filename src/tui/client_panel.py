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
net.ipv4.tcp_syn_linear_timeouts = 4, as measured here: 1.00, 2.04, 3.06, 4.08 s).
The `phases p99` lines (whole items, as many lines as the width takes) split a request's
client-side time as `hey` does (loadgen/stats.py ClientPhases): wait for a free connection
(or on a connection that closed under the request, sent again), connect (the handshakes
the `connect` line counts), time to first byte, read, and `gen`,
the generator's own delay in noting a response (near 0 unless it is the bottleneck); the
phases of one request add up to its latency, their p99s need not. When the generator is
the bottleneck (loadgen/selfwatch.py: its process near a full core, or its open-loop
schedule lagging), red lines say so: the figures then describe the client; an open loop
held back by busy connections is said in yellow (the server's doing, not the client's)."""

from __future__ import annotations

import textwrap

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical

from loadgen.stats import ERROR_KINDS, ClientPhases, LoadStats
from values.units import WAIT_ALARM_MS, ms, num

from .drawing import spark
from .frame import Frame
from .quiet_static import QuietStatic, line_count

SPARK_SECONDS = 60
PANEL_WIDTH = 44  # columns inside the panel's border and padding (#right is 48 wide)


class ClientPanel(Vertical):
    # what it says with no load (the mode's: the live lab's keys, a replay, attach's flag)
    no_load: tuple[str, str] = ("no load running", "l chooses a load, g runs it")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines = (1, 0)  # as last shown: all its lines, and those level 2 leaves out

    def compose(self) -> ComposeResult:
        yield QuietStatic(id="client-head")
        yield QuietStatic(id="client-spark")
        yield QuietStatic(id="client-body")

    def show(self, frame: Frame, idle: tuple[str, str] | None = None) -> None:
        """Draw the frame's load; with none, `idle` (head line, hint) or `no_load`."""
        client = frame.snapshot.client
        head = self.query_one("#client-head", QuietStatic)
        sparkline = self.query_one("#client-spark", QuietStatic)
        body = self.query_one("#client-body", QuietStatic)
        if client is None:
            what, hint = idle or self.no_load
            head.show_content(Text(what, style="dim"), height=1)
            sparkline.display = False
            body.show_content(Text(hint, style="dim"), height=1)
            self.lines = (2, 0)
            return
        width = body.content_region.width or self.content_region.width or PANEL_WIDTH
        head.show_content(_head(client, width), height=1)
        full = frame.compact < 2  # else a column short of rows: no sparkline, no phases
        sparkline.display = full
        if full:
            sparkline.show_content(_throughput(client, width), height=1)
        text, phase_lines = _body(client, width, phases=full)
        body.show_content(text, height=line_count(text))
        if not full:  # what level 2 leaves out, for rows()
            phase_lines = _body(client, width)[1]
        spared = 1 + phase_lines  # the sparkline and the phases
        self.lines = (1 + full + line_count(text) + (0 if full else spared), spared)

    def rows(self, compact: int) -> int:
        """Its lines at that compactness (LabScreen shares the column's height): level 2
        leaves out the sparkline and the client's phases."""
        every, spared = self.lines
        return every - spared if compact >= 2 else every


def _head(client: LoadStats, width: int = PANEL_WIDTH) -> Text:
    """`20,700 req/s  20 clients, running` (`20,700/s` when that is too wide)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    state = "paused" if client.paused else ("running" if client.running else "ended")
    rate = num(client.rps)
    tail = f"{client.clients} clients, {state}"
    unit = " req/s  " if len(rate) + 8 + len(tail) <= width else "/s  "
    text.append(rate, style="bold")
    text.append(unit, style="dim")
    text.append(tail, style="" if client.running else "yellow")
    return text


def _throughput(client: LoadStats, width: int) -> Text:
    """A sparkline of req/s, one cell a second, from zero; its peak when there is room."""
    width = width or SPARK_SECONDS
    series = list(client.rps_series[-width:])
    line = spark(series, width, lo=0.0)
    line.stylize("cyan")
    if series:
        line.append(f"  peak {num(max(series))}/s" if len(series) + 14 <= width else "", "dim")
    return line


def _body(client: LoadStats, width: int, phases: bool = True) -> tuple[Text, int]:
    """Latency, connect time, connects by second, the client's phases (unless not
    `phases`), the waiting requests, errors; and how many lines the phases took."""
    text = Text(no_wrap=True, overflow="ellipsis")
    latency = client.waiting_latency
    text.append("latency ", style="dim")
    text.append(f"p50 {ms(latency.p50 if latency.count else None)}")
    text.append("  p99 ", style="dim")
    text.append(ms(latency.p99 if latency.count else None), style=_slow(latency.p99))
    text.append("\nconnect ", style="dim")
    text.append("p99 ", style="dim")
    connect = client.connect_ms
    text.append(ms(connect.p99 if connect.count else None), style=_slow(connect.p99))
    text.append(f"  open {num(client.open_connections)}", style="dim")
    if client.connect_seconds:  # dropped handshakes: the clusters the SYN retransmits make
        items = [
            (f"{second + 1}s", f"\u00d7{num(count)}")
            for second, count in enumerate(client.connect_seconds)
            if count
        ]
        text.append("\n")
        text.append_text(_items("connects", items, width, "dim", "bold red"))
    phase_lines = 0
    if phases and client.phases is not None and client.phases.ttfb.count:
        text.append("\n")
        lines = _phases(client.phases, width)
        phase_lines = line_count(lines)
        text.append_text(lines)
    text.append("\nwaiting ", style="dim")
    text.append_text(_waiting(client.in_flight, client.oldest_wait_ms, client.backlog))
    text.append("\nerrors ", style="dim")
    text.append_text(_errors(client.errors))
    if client.bottleneck:
        style = "bold red" if client.generator_bound else "yellow"
        for line in textwrap.wrap(client.bottleneck, max(20, width)):  # a sentence: wrapped
            text.append("\n" + line, style=style)
    return text, phase_lines


def _phases(ph: ClientPhases, width: int) -> Text:
    """`phases p99 wait 0  conn 0  ttfb 7.47 ms` then `read 0  gen 0.27 ms` on as many
    lines as the panel's width takes whole (it read "ttfb…" at 48 columns)."""
    pairs = (
        ("wait", ph.wait),
        ("conn", ph.connect),
        ("ttfb", ph.ttfb),
        ("read", ph.read),
        ("gen", ph.resume),
    )
    items = [(label, "0" if p.p99 == 0 else ms(p.p99), _slow(p.p99)) for label, p in pairs]
    return _items("phases p99", items, width)


def _items(
    lead: str,
    items: list[tuple[str, str]] | list[tuple[str, str, str]],
    width: int,
    label_style: str = "dim",
    value_style: str = "",
) -> Text:
    """`lead label value  label value ...`, wrapped by whole items under the first."""
    t = Text()
    t.append(lead, style="dim")
    indent = len(lead)
    used = indent
    for item in items:
        label, value = item[0], item[1]
        style = item[2] if len(item) > 2 else value_style  # type: ignore[misc]
        cell = len(label) + 1 + len(value)
        if used > indent and used + 2 + cell > width:
            t.append("\n" + " " * indent)
            used = indent
        t.append("  " if used > indent else " ")
        t.append(f"{label} ", style=label_style)
        t.append(value, style=style)
        used += (2 if used > indent else 1) + cell
    return t


def _errors(errors: dict[str, int]) -> Text:
    """`none`, or each kind seen with its count, the known kinds first in their order."""
    seen = [(kind, errors.get(kind, 0)) for kind in ERROR_KINDS if errors.get(kind)]
    seen += [(kind, n) for kind, n in errors.items() if kind not in ERROR_KINDS and n]
    text = Text()
    if not seen:
        text.append("none", style="green")
    for i, (kind, n) in enumerate(seen):
        text.append(" · " if i else "")
        text.append(f"{kind} {n:,}", style="bold red")
    return text


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
