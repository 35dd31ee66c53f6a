"""The app behind `serverscope fleet`: the fleet screen, q to quit.

Apart from tui.app's ServerscopeApp, which is built around a lab's source (a server and a
load to stop on the way out): the fleet starts nothing, so quitting only closes the
Prometheus client (the command does, after the app returns).
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.screen import Screen

from .driver import QuickExitDriver
from .screens.fleet import FleetScreen, Reader


class FleetApp(App[int]):
    TITLE = "serverscope fleet"
    CSS = """
    #fleet-head, #server-head { height: auto; padding: 0 1; background: $primary 25%; }
    #fleet-table, #server-workers { height: 1fr; }
    #fleet-why, #server-queue { height: auto; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, reader: Reader, *, period: float = 5.0) -> None:
        super().__init__()
        self.fleet_screen = FleetScreen(reader, period=period)

    def get_driver_class(self) -> type[Driver]:
        cls = super().get_driver_class()
        return QuickExitDriver if cls is LinuxDriver else cls

    def get_default_screen(self) -> Screen[None]:
        return self.fleet_screen


def run_fleet(reader: Reader, *, period: float = 5.0) -> int:
    app = FleetApp(reader, period=period)
    app.run()
    return app.return_code or 0
