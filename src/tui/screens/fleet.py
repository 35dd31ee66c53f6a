"""`serverscope fleet`: every server the agents export, worst first; Enter opens one.

FleetScreen lists the fleet a FleetReader reads from Prometheus, refreshed every period;
the line under the table says why the highlighted server ranks where it does. Enter
pushes ServerScreen: that server's workers over the last minutes (range queries), one
line per series on one scale for all the workers, so the busiest stands out. Reads run in
a thread of their own: a slow Prometheus never freezes the keys, and a failed read is one
line on screen while the last good figures stay, marked with their age.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ClassVar, Protocol, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from lab.fleet_source import PromError
from values.fleet import Fleet, FleetServer, ServerHistory, ServerId
from values.fleet_format import (
    COLUMNS,
    HISTORY_COLUMNS,
    cells,
    history_cells,
    last_value,
    peaks,
    severity_of,
    sparkline,
)

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
SPARK_WIDTH = 24  # characters per line over time
NO_AGENT = (
    "no serverscope agent seen: is Prometheus scraping `serverscope attach --no-ui --export "
    "HOST:PORT`? (see docs/fleet.md)"
)
T = TypeVar("T")


class Reader(Protocol):
    """What the screens read through (lab.fleet_source.FleetReader; a stub in tests)."""

    @property
    def url(self) -> str: ...

    def read(self, *, workers: bool = True) -> Fleet: ...

    def history(self, sid: ServerId) -> ServerHistory: ...


def _in_thread(
    screen: Screen, work: Callable[[], T], done: Callable[[T], None], failed: Callable[[str], None]
) -> None:
    """Run `work` in a daemon thread; hand its result (or its PromError's line) back to the
    screen's event loop. A daemon: quitting never waits for a query in flight."""

    def run() -> None:
        try:
            result = work()
        except PromError as e:
            message = str(e)
        except Exception as e:  # a bug of ours: said on screen, not a screen stuck reading
            message = f"{type(e).__name__}: {e}"
        else:
            screen.app.call_from_thread(done, result)
            return
        screen.app.call_from_thread(failed, message)

    threading.Thread(target=run, name="fleet-read", daemon=True).start()


class FleetScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        # before the table's own Enter (select), so the footer names what Enter does
        Binding("enter", "open", "Workers", priority=True),
        Binding("r", "reread", "Refresh"),
    ]

    def __init__(self, reader: Reader, *, period: float = 5.0) -> None:
        super().__init__()
        self.reader = reader
        self.period = period
        self.fleet: Fleet | None = None
        self.error: str | None = None
        self._reading = False
        self._keys: list[str] = []  # row keys, in the table's order

    def compose(self) -> ComposeResult:
        yield Static("reading the fleet…", id="fleet-head")
        yield DataTable(id="fleet-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="fleet-why")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.reread()
        self.set_interval(self.period, self.reread)

    # -- reading ------------------------------------------------------------------------
    def reread(self) -> None:
        if self._reading:
            return
        self._reading = True
        # the list needs each server's worker count, not its rows (most of the series)
        _in_thread(self, lambda: self.reader.read(workers=False), self.show, self.failed)

    def action_reread(self) -> None:
        self.reread()

    def failed(self, message: str) -> None:
        self._reading = False
        self.error = message
        self.update_head()

    def show(self, fleet: Fleet) -> None:
        self._reading = False
        self.error = None
        self.fleet = fleet
        table = self.query_one(DataTable)
        chosen = self.selected()
        keep = chosen.id.instance + "\0" + chosen.id.job if chosen else None
        table.clear()
        self._keys = []
        for i, s in enumerate(fleet.servers, 1):
            key = s.id.instance + "\0" + s.id.job
            style = SEVERITY_STYLE.get(severity_of(s) or "", "")
            row = dict(zip(COLUMNS, cells(i, s), strict=True))
            table.add_row(
                *(Text(c, style=style if n == "diagnoses" else "") for n, c in row.items()), key=key
            )
            self._keys.append(key)
        if keep in self._keys:
            table.move_cursor(row=self._keys.index(keep))
        self.update_head()
        self.update_why()

    def update_head(self) -> None:
        head = self.query_one("#fleet-head", Static)
        fleet = self.fleet
        if fleet is None:
            text = Text(f"reading the fleet from {self.reader.url}…")
        else:
            when = time.strftime("%H:%M:%S", time.localtime(fleet.time))
            text = Text(
                f"fleet from {fleet.prometheus} at {when}: {len(fleet.servers)} servers seen "
                f"over {fleet.minutes:g} min, worst first",
                style="bold",
            )
            if not fleet.servers:
                text.append(f"\n{NO_AGENT}", style="")
        if self.error:
            age = f" (figures from {time.time() - fleet.time:.0f} s ago)" if fleet else ""
            text.append(f"\nlast read failed: {self.error}{age}", style="bold red")
        head.update(text)

    # -- the highlighted row ------------------------------------------------------------
    def selected(self) -> FleetServer | None:
        if self.fleet is None or not self.fleet.servers:
            return None
        row = self.query_one(DataTable).cursor_row
        servers = self.fleet.servers
        return servers[row] if 0 <= row < len(servers) else None

    def update_why(self) -> None:
        s = self.selected()
        why = self.query_one("#fleet-why", Static)
        if s is None or s.standing is None:
            why.update(self.fleet.order if self.fleet else "")
            return
        text = Text(f"{s.id.name} ({s.id.job} {s.id.instance}): ", style="bold")
        text.append(s.standing.reason, style=SEVERITY_STYLE.get(s.standing.severity or "", ""))
        text.append(f"\n{self.fleet.order if self.fleet else ''}", style="dim")
        why.update(text)

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.update_why()

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        s = self.selected()
        if s is not None:
            self.app.push_screen(ServerScreen(self.reader, s, period=self.period))


class ServerScreen(Screen[None]):
    """One server's workers over the last minutes; Escape goes back to the list."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "reread", "Refresh"),
    ]

    def __init__(self, reader: Reader, server: FleetServer, *, period: float = 5.0) -> None:
        super().__init__()
        self.reader = reader
        self.server = server
        self.period = period
        self.history: ServerHistory | None = None
        self.error: str | None = None
        self._reading = False

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="server-head")
        yield DataTable(id="server-workers", cursor_type="row", zebra_stripes=True)
        yield Static("", id="server-queue")
        yield Footer()

    def _title(self) -> Text:
        s = self.server
        text = Text(f"{s.id.name}", style="bold")
        text.append(f"  {s.id.job} {s.id.instance}; {s.standing.reason if s.standing else ''}")
        return text

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in HISTORY_COLUMNS:
            table.add_column(name)
        self.reread()
        self.set_interval(self.period, self.reread)

    def reread(self) -> None:
        if self._reading:
            return
        self._reading = True
        sid = self.server.id
        _in_thread(self, lambda: self.reader.history(sid), self.show, self.failed)

    def action_reread(self) -> None:
        self.reread()

    def failed(self, message: str) -> None:
        self._reading = False
        self.error = message
        failure = Text(f"last read failed: {message}", style="bold red")
        self.query_one("#server-queue", Static).update(failure)

    def show(self, h: ServerHistory) -> None:
        self._reading = False
        self.error = None
        self.history = h
        table = self.query_one(DataTable)
        table.clear()
        top = peaks(h.workers)
        for w in h.workers:
            table.add_row(*history_cells(w, SPARK_WIDTH, top, (h.start, h.end)))
        minutes = (h.end - h.start) / 60
        q = last_value(h.queue)
        line = Text(
            f"over the last {minutes:g} min, a point every {h.step_s:g} s; rates over "
            f"{h.rate_window_s:g} s; one scale per column for all the workers\n"
        )
        line.append(f"accept queue (all listeners) {'?' if q is None else f'{q:.0f}'}  ")
        line.append(sparkline(h.queue, SPARK_WIDTH * 2, span=(h.start, h.end)))
        if not h.workers:
            line.append("\nno worker series for this server over the range")
        self.query_one("#server-queue", Static).update(line)
