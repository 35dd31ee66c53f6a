"""The main screen every mode shares: the panels, fed one snapshot per period by a source.

    LiveScreen(LiveSource(Session(config, level)))   # `serverscope`: keys drive the session
    ReplayScreen(ReplaySource(snapshots))             # `serverscope replay FILE`, tests
    DemoScreen(LiveSource(...), scenario)             # `serverscope demo NAME`
    AttachScreen(LiveSource(Attachment.open(...)))    # `serverscope attach`

This base only draws snapshots (the source is asked from a thread: a live sample reads
/proc for up to 1024 workers) and keeps the worker selection; each mode adds its keys by
subclassing, so no code here asks which mode it is in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header

from values.snapshot import Snapshot, WorkerKey, WorkerSample

from ..backlog_panel import BacklogPanel
from ..client_panel import ClientPanel
from ..cpu_limit import workers_title
from ..diagnosis_banner import DiagnosisBanner
from ..event_log import EventLog
from ..frame import Frame
from ..imbalance_panel import ImbalancePanel
from ..layout import share
from ..messages import WorkerSelected
from ..narration_panel import NarrationPanel
from ..phases_panel import STOPPED, PhasesPanel
from ..phases_panel import TITLE as PHASES_TITLE
from ..scoreboard_grid import ScoreboardGrid, summary
from ..scoreboard_legend import ScoreboardLegend
from ..source import ScreenSource
from ..worker_stack import Stacks
from ..worker_table import WorkerTable
from .worker import WorkerScreen

MIN_SLEEP = 0.02  # seconds between samples however long the last one took


def sampling_cost(snap: Snapshot | None) -> str | None:
    """The header's "sampling 3% CPU": `Snapshot.cost_ms` over the interval it covers."""
    if snap is None or snap.cost_ms is None or not snap.interval_s:
        return None
    return f"sampling {snap.cost_ms / (snap.interval_s * 10.0):.0f}% CPU"


class LabScreen(Screen[None]):
    # q quits from here and from the app (which also catches it over a modal chooser):
    # bound here too so that it comes first in the footer, before the mode's keys.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit", priority=True),
        Binding("ctrl+c", "app.quit", "Quit", show=False, priority=True),
        Binding("enter", "worker", "Worker", tooltip="the selected worker's request, client"),
        Binding("d", "stack", "Stack", tooltip="the selected worker's stack, in its detail"),
    ]

    def __init__(self, source: ScreenSource) -> None:
        super().__init__()
        self.source = source
        self.selected: WorkerKey | None = None
        self.chosen = False  # the user picked the selection (until then it follows the busiest)
        self.last: Snapshot | None = None
        self.frozen = False
        self.quitting = False
        self.busy: str | None = None  # shown in the banner in place of diagnoses
        self.compact = 0  # how tight the measures' column is (Frame.compact)
        self.threads = False  # thread rows (attach) unfolded under their process
        self.detail: WorkerScreen | None = None  # the selected worker in detail (Enter)
        self.stacks = Stacks()  # each worker's latest stack: d, or taken by itself (stuck)

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.compose_top()
        yield DiagnosisBanner(id="banner")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                with Vertical(id="scoreboard-panel"):
                    yield ScoreboardGrid(id="grid")
                    yield ScoreboardLegend(id="legend", extra=self.legend_extra())
                yield WorkerTable(id="workers")
                # under the workers, so that the measures' column runs the whole height
                yield EventLog(id="events")
            with Vertical(id="right"):
                yield ImbalancePanel(id="imbalance")
                yield BacklogPanel(id="backlog")
                yield PhasesPanel(id="phases")
                yield ClientPanel(id="client")
        yield Footer()

    def compose_top(self) -> Iterable[Widget]:
        """Widgets above the banner (a demo's narration)."""
        return ()

    def on_mount(self) -> None:
        self.query_one("#scoreboard-panel").border_title = "scoreboard"
        self.query_one("#imbalance").border_title = "imbalance"
        self.query_one("#backlog").border_title = "accept queues"
        self.query_one("#phases").border_title = PHASES_TITLE
        self.query_one("#client").border_title = "clients see"
        self.query_one("#events").border_title = "events"
        self.query_one("#workers").border_title = "workers"
        self.query_one(ClientPanel).no_load = self.no_load()
        self.update_header()
        if self.busy:
            self.query_one(DiagnosisBanner).status(self.busy)
        self.query_one(WorkerTable).focus()
        self._pump()

    # -- what each mode adds ------------------------------------------------------------
    async def start(self) -> bool:
        """Get the source ready (blocking work off the loop); False: the app is leaving."""
        self.busy = None
        return True

    def subtitle(self) -> str:
        """The header's second line."""
        return ""

    def sampling_cost(self) -> str | None:
        """The monitor's own CPU per period (sampling and judging the last snapshot) as a
        share of one core, so the user can judge what watching costs; None: not measured."""
        return sampling_cost(self.last)

    def paused_pids(self) -> frozenset[int]:
        """Workers stopped by us (SIGSTOP), drawn as paused."""
        return frozenset()

    def legend_extra(self) -> tuple[tuple[str, str], ...]:
        """States this mode draws beyond the scoreboard's (attach: stopped, unknown)."""
        return ()

    def no_load(self) -> tuple[str, str]:
        """What the client panel says when no load runs (its head line, then a hint)."""
        return ClientPanel.no_load

    def tick(self) -> None:
        """Called once per period after drawing."""

    def system_commands(self) -> Iterable[SystemCommand]:
        """This mode's entries in the command palette."""
        return ()

    def closing(self) -> None:
        """The app is about to close the source."""

    def finish(self) -> None:
        """Blocking, after the source closed: wait for this mode's own work to stop."""

    # -- the sampling loop --------------------------------------------------------------
    @work(exclusive=True, group="pump")
    async def _pump(self) -> None:
        if not await self.start():
            return
        while not self.quitting:
            began = time.monotonic()
            try:
                snap = await asyncio.to_thread(self.source.next)
            except Exception as e:  # a sample must never take the UI down
                self.source.log("error", f"sampling failed: {e}")
                snap = None
            if self.quitting:
                return
            try:
                if snap is not None and not self.frozen:
                    self.draw(snap)
                elif snap is None:
                    self.draw_events()
            except NoMatches:  # the app is leaving and has taken the panels down already
                return
            self.tick()
            spent = time.monotonic() - began
            await asyncio.sleep(max(MIN_SLEEP, self.source.period - spent))

    def shut_down(self) -> asyncio.Future[None] | None:
        """Stop sampling, send the stop signals now, and close the source in a thread;
        returns the close, to be awaited (None when already shutting down)."""
        if self.quitting:
            return None
        self.quitting = True
        self.source.interrupt()  # the processes start dying now; close() reaps them
        self.closing()
        return asyncio.ensure_future(asyncio.to_thread(self.source.close))

    # -- drawing ------------------------------------------------------------------------
    def frame(self, snap: Snapshot) -> Frame:
        keys = {w.key for w in snap.workers}
        if self.selected not in keys:
            self.selected = _pick_worker(snap, self.selected)
        if not self.chosen:  # the phases panel opened on an idle worker: "none" everywhere
            self.selected = _busiest(snap, self.selected)
        history = self.source.history()
        compact = max(self.compact, self.has_class("-short"))
        return Frame(snap, history, self.selected, self.paused_pids(), self.threads, compact)

    def draw(self, snap: Snapshot) -> None:
        self.last = snap
        frame = self.frame(snap)
        self.query_one(ScoreboardGrid).show(frame)
        panel = self.query_one("#scoreboard-panel")
        title = summary(frame, panel.outer_size.width)
        if panel.border_title != title:  # (setting it redraws the panel)
            panel.border_title = title
        self.query_one(WorkerTable).show(frame)
        table, title = self.query_one(WorkerTable), workers_title(frame)
        if table.border_title != title:
            table.border_title = title
        self.query_one(ImbalancePanel).show(frame)
        self.query_one(BacklogPanel).show(frame)
        self.query_one(PhasesPanel).show(frame)
        self.query_one(ClientPanel).show(frame)
        banner = self.query_one(DiagnosisBanner)
        if self.busy:
            banner.status(self.busy)
        else:
            banner.show(frame)
        if self.share_height():  # the measures' column changed form: draw it in that form
            frame = self.frame(snap)
            for panel in self._measures():
                panel.show(frame)
        self.draw_events()
        self.update_header()
        if self.detail is not None:
            self.stacks.follow(self.source.history())
            self.detail.show(snap)

    def _measures(self) -> tuple[ImbalancePanel, BacklogPanel, PhasesPanel, ClientPanel]:
        """The measures' column, top to bottom."""
        q = self.query_one
        return (q(ImbalancePanel), q(BacklogPanel), q(PhasesPanel), q(ClientPanel))

    def share_height(self) -> bool:
        """Share the rows between a demo's narration and the measures' column, the
        evidence first (tui.layout). True when the column's form changed."""
        short = self.has_class("-short")
        body = self.size.height - 2 - self.query_one(DiagnosisBanner).lines  # header, footer
        narration = next(iter(self.query(NarrationPanel)), None)
        wants = narration.need(narration.width()) if narration is not None else None

        def column(level: int) -> int:
            borders = 1 if short or level else 2
            return sum(p.rows(level) + borders for p in self._measures())

        shared = share(body, column, wants)
        if narration is not None:
            narration.budget = shared.narration
        changed = shared.level != self.compact
        self.compact = shared.level
        self.query_one("#right").set_class(shared.level >= 1, "-tight")
        return changed

    def draw_stopped(self, head: str, hint: str) -> None:
        """Nothing runs: every panel is emptied, as the last frame's figures would claim a
        live server ("50 req/s  40 clients, running" and workers in K, 4 s after a stop)."""
        self.last = None
        frame = Frame(Snapshot(-1, time.monotonic(), time.time(), None, source=STOPPED))
        self.query_one(ScoreboardGrid).show(frame)
        self.query_one("#scoreboard-panel").border_title = "scoreboard · stopped"
        self.query_one(WorkerTable).show(frame)
        self.query_one(ImbalancePanel).show(frame)
        self.query_one(BacklogPanel).show(frame)
        self.query_one(PhasesPanel).show(frame)
        self.query_one(ClientPanel).show(frame, idle=(head, hint))
        self.update_header()

    def redraw(self) -> None:
        if self.last is not None:
            self.draw(self.last)

    def draw_events(self) -> None:
        self.query_one(EventLog).show(self.source.events(), self.source.t0)

    def update_header(self) -> None:
        sub = self.subtitle()
        if self.app.sub_title != sub:
            self.app.sub_title = sub

    def status(self, message: str) -> None:
        """Say what the lab is doing in the banner, until the next frame clears `busy`."""
        self.busy = message
        self.query_one(DiagnosisBanner).status(message)

    # -- selection ----------------------------------------------------------------------
    @on(WorkerSelected)
    def _worker_selected(self, message: WorkerSelected) -> None:
        self.chosen = True
        if message.key != self.selected and self.last is not None:
            self.selected = message.key
            frame = self.frame(self.last)  # only the widgets that show the selection
            self.query_one(ScoreboardGrid).show(frame)
            self.query_one(WorkerTable).show(frame)
            self.query_one(PhasesPanel).show(frame)

    def action_worker(self) -> None:
        """The selected worker in detail, over this screen, until Enter or Escape."""
        if self.selected is None or self.last is None or self.detail is not None:
            return
        self.stacks.follow(self.source.history())
        self.detail = WorkerScreen(
            self.selected,
            self.last,
            self.stacks,
            live=self.source.live_stacks,
            take_stack=self.action_stack,
        )

        def closed(_: None) -> None:
            self.detail = None

        self.app.push_screen(self.detail, closed)

    def action_stack(self) -> None:
        """Read the selected worker's stack in a thread (a capture takes 40 ms to a
        second); the detail opens and shows it when it comes."""
        w = self.selected_worker()
        if w is None:
            return
        if not self.source.live_stacks:
            self.notify("a recording: its stacks are those taken by themselves while it ran")
        elif not w.alive:
            self.notify(f"{w.label} is not running: no stack to read")
        else:
            asked = time.monotonic()
            self.stacks.asked(w.key, asked)
            self._take_stack(w.key, w.pid, w.tid, asked)
        if self.detail is None:
            self.action_worker()
        elif self.last is not None:
            self.detail.show(self.last)

    @work(thread=True, group="stack")
    def _take_stack(self, key: WorkerKey, pid: int, tid: int, asked: float) -> None:
        cap = self.source.stack(pid, tid)
        if cap is None or self.quitting:
            return

        def came() -> None:
            self.stacks.came(key, asked, cap)
            if self.detail is not None and self.last is not None:
                self.detail.show(self.last)

        try:
            self.app.call_from_thread(came)
        except RuntimeError:  # the app left while the stack was read
            pass

    def selected_worker(self) -> WorkerSample | None:
        if self.last is None:
            return None
        return next((w for w in self.last.workers if w.key == self.selected), None)

    def selected_pid(self) -> int | None:
        """The pid of the selected worker while it lives (the one faults act on)."""
        worker = self.selected_worker()
        return worker.pid if worker is not None and worker.alive else None


def _pick_worker(snap: Snapshot, old: WorkerKey | None) -> WorkerKey | None:
    """Keep the selection on the same slot (a respawned worker), else the first live one."""
    live = snap.live_workers
    if old is not None:
        for w in live:
            if w.slot is not None and w.slot == old[0]:
                return w.key
    return live[0].key if live else None


def _activity(w: WorkerSample) -> tuple[int, int, int]:
    """How busy a worker is: requests and connections its phases saw over the window, its
    requests in the interval, its open connections."""
    ph = w.window_phases
    seen = sum(h.count for _, h in ph.items() if h is not None) if ph is not None else 0
    return (seen, w.requests or 0, w.connections or 0)


def _busiest(snap: Snapshot, current: WorkerKey | None) -> WorkerKey | None:
    """The selection before the user makes one: the current worker while it is busy (no
    jumping from frame to frame), else the busiest live one (the first of equals)."""
    live = snap.live_workers
    now = next((w for w in live if w.key == current), None)
    if now is not None and any(_activity(now)):
        return current
    best = max(live, key=_activity, default=None)
    return best.key if best is not None and any(_activity(best)) else current
