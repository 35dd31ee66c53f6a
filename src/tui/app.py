"""The serverscope TUI: one App showing one main screen, the mode's (tui/screens/).

    run_live(config, level)    # `serverscope`: LiveScreen over a Session
    run_replay(snapshots, name)  # `serverscope replay FILE`: ReplayScreen
    run_demo(scenario)         # `serverscope demo NAME`: DemoScreen
    run_attach(attachment)     # `serverscope attach`: AttachScreen over the lab's Attachment

The app itself only owns what concerns the whole program: the styles, quitting (which
closes the screen's source: the server and the load stop), kill and hang-up signals, and
the command palette (the mode's entries come from its screen).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.screen import Screen

from judging.stuck import StuckSettings
from lab.attach import Attachment
from lab.player import DemoPlayer
from lab.scenarios import Scenario
from lab.server import ServerConfig
from lab.session import LIVE_DURATION, Session
from loadgen.levels import LoadLevel
from values.snapshot import Snapshot

from .driver import QuickExitDriver
from .screens.attach import AttachScreen
from .screens.demo import DemoScreen
from .screens.lab import LabScreen
from .screens.live import LiveScreen
from .screens.replay import ReplayScreen
from .source import LiveSource, ReplaySource

HANGUP_GRACE = 10.0  # seconds


class ServerscopeApp(App[int]):
    CSS_PATH = Path(__file__).with_name("serverscope.tcss")
    TITLE = "serverscope"
    # -full: the worker table has all its columns and the measures take the rest
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide"), (128, "-full")]
    # -roomy: a demo's narration has the room for all its bullets at once
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall"), (45, "-roomy")]

    BINDINGS: ClassVar[list[BindingType]] = [
        # (the lab screen shows these in its footer; here they also work over a chooser)
        Binding("q", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("tab", "focus_next", "Focus", show=False),
    ]

    def __init__(self, lab: LabScreen) -> None:
        super().__init__()
        self.lab = lab
        self._source_closing: asyncio.Future[None] | None = None  # the source's close, once q

    def get_driver_class(self) -> type[Driver]:
        """Textual's own driver, but on Linux one that does not wait 0.2 s to leave."""
        cls = super().get_driver_class()
        if cls is LinuxDriver:
            return QuickExitDriver
        return cls

    def get_default_screen(self) -> Screen[None]:
        return self.lab

    def on_mount(self) -> None:
        self._install_signal_handlers()

    # -- signals ------------------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        """A kill (SIGTERM) quits cleanly, like q. The terminal closing (SIGHUP) stops the
        server and the load, then leaves at once: with the terminal gone, Textual's shutdown
        would block forever writing its restore sequences to it."""
        try:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, lambda: self.call_later(self.action_quit))
            loop.add_signal_handler(signal.SIGHUP, self._hang_up)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    def _hang_up(self) -> None:
        def close_and_leave() -> None:
            try:
                self.lab.source.interrupt()
                self.lab.source.close()
            finally:
                os._exit(128 + signal.SIGHUP)

        threading.Thread(target=close_and_leave, name="hangup", daemon=True).start()
        # whatever happens to close(), leave within HANGUP_GRACE s (children die with us)
        threading.Timer(HANGUP_GRACE, os._exit, (128 + signal.SIGHUP,)).start()

    def _remove_signal_handlers(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    # -- the command palette ------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from self.lab.system_commands()

    # -- quitting -----------------------------------------------------------------------
    async def action_quit(self) -> None:
        closing = self.lab.shut_down()
        if closing is not None:
            # the processes are reaped while Textual takes its screens down (~50 ms);
            # on_unmount waits for the close, before the terminal is given back
            self._source_closing = closing
            self.exit(0)

    async def on_unmount(self) -> None:
        self.lab.quitting = True
        self._remove_signal_handlers()
        if self._source_closing is not None:
            await self._source_closing
        await asyncio.to_thread(self.lab.source.close)
        await asyncio.to_thread(self.lab.finish)


# -- entry points ---------------------------------------------------------------------------


def run_live(
    config: ServerConfig,
    level: LoadLevel | None,
    *,
    record: str | None = None,
    load_duration: float = LIVE_DURATION,
    observers: Sequence[Callable[[Snapshot], None]] = (),
    stuck_settings: StuckSettings | None = None,
    cpu_limit: float | None = None,
) -> tuple[int, str | None]:
    """Open the TUI on a live session; returns (exit code, startup error or None).
    `observers` are handed every snapshot too (e.g. the Prometheus exporter); `cpu_limit`:
    cores, the server in a CPU-limited cgroup (lab.cpu_limit)."""
    session = Session(
        config, level, record=record, stuck_settings=stuck_settings, cpu_limit=cpu_limit
    )
    session.observers.extend(observers)
    source = LiveSource(session)
    screen = LiveScreen(source, load_duration=load_duration)
    app = ServerscopeApp(screen)
    try:
        code = app.run()
    finally:
        source.close()
    if screen.startup_error:
        return 2, screen.startup_error
    return (code or app.return_code or 0), None


def run_attach(attachment: Attachment, *, threads: bool = False) -> int:
    """Open the TUI on an attached server (`serverscope attach`); what serverscope started
    is stopped on the way out (the server keeps running)."""
    source = LiveSource(attachment)
    app = ServerscopeApp(AttachScreen(source, threads=threads))
    try:
        app.run()
    finally:
        source.close()
    return app.return_code or 0


def run_replay(snapshots: list[Snapshot], name: str) -> int:
    app = ServerscopeApp(ReplayScreen(ReplaySource(snapshots, name=name)))
    app.run()
    return app.return_code or 0


def run_demo(scenario: Scenario) -> tuple[int, str | None]:
    """Play a guided demo in the TUI (`serverscope demo NAME`); returns (code, error)."""
    player = DemoPlayer(scenario)
    step = player.step
    source = LiveSource(Session(step.config, player.level(step)))
    screen = DemoScreen(source, scenario)
    app = ServerscopeApp(screen)
    try:
        app.run()
    finally:
        source.close()
    if screen.startup_error:
        return 2, screen.startup_error
    return app.return_code or 0, None
