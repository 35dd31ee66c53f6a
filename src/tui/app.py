"""The serverscope TUI: one screen of widgets fed by a snapshot source.

    ServerscopeApp(LiveSource(Session(config, level)))   # live (`serverscope`)
    ServerscopeApp(ReplaySource(snapshots))               # `serverscope replay FILE`, tests
    run_demo(scenario)                                    # `serverscope demo NAME`

The app only draws snapshots and turns keys into Session calls. Blocking calls (start,
restart, set_level, sample) run off the event loop, so keys are answered while it waits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from lab.player import DemoPlayer
from lab.scenarios import Scenario, apply_fault
from lab.session import LIVE_DURATION, Session
from loadgen.levels import PRESET_HELP, PRESETS, LoadError, LoadLevel
from servers import models
from servers.config import ConfigError, ServerConfig
from servers.supervisor import ServerError
from telemetry.snapshot import Snapshot

from .backlog_panel import BacklogPanel
from .client_panel import ClientPanel
from .demo_panel import NarrationPanel
from .diagnosis_banner import DiagnosisBanner
from .event_log import EventLog
from .frame import Frame, WorkerKey
from .imbalance_panel import ImbalancePanel
from .load_screen import LoadScreen
from .messages import WorkerSelected
from .model_screen import ModelScreen
from .scoreboard_grid import ScoreboardGrid, ScoreboardLegend, summary
from .source import LiveSource, ReplaySource, Source
from .worker_table import WorkerTable

HANGUP_GRACE = 10.0  # seconds

START_ERRORS = (ServerError, ConfigError, LoadError, OSError)
LIVE_ACTIONS = frozenset(
    {"model", "load", "clients", "start_stop", "restart", "rerun", "fault", "pause_load"}
)
REPLAY_ACTIONS = frozenset({"play", "seek", "step"})
DEMO_ACTIONS = frozenset({"demo_step"})


class ServerscopeApp(App[int]):
    CSS_PATH = Path(__file__).with_name("serverscope.tcss")
    TITLE = "serverscope"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    BINDINGS = [
        Binding("q", "quit", "Quit", priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("m", "model", "Model"),
        Binding("l", "load", "Load"),
        Binding(
            "p", "fault('pause')", "Pause", tooltip="SIGSTOP the selected worker (again: SIGCONT)"
        ),
        Binding("k", "fault('kill')", "Kill", tooltip="SIGKILL the selected worker"),
        Binding("b", "fault('burn')", "Burn", tooltip="the selected worker burns CPU for 3 s"),
        Binding("plus,equals_sign", "clients(2)", "Clients", key_display="+/-"),
        Binding("minus", "clients(0.5)", "Clients /2", show=False),
        Binding("r", "restart", "Restart"),
        Binding("s", "start_stop", "Stop/start"),
        Binding("g", "rerun", "Rerun load", show=False),
        Binding("space", "freeze", "Freeze"),
        Binding("space", "play", "Play/pause"),
        Binding("left_square_bracket", "seek(-5)", "-5s", key_display="["),
        Binding("right_square_bracket", "seek(5)", "+5s", key_display="]"),
        Binding("comma", "step(-1)", "-1 frame", show=False),
        Binding("full_stop", "step(1)", "+1 frame", show=False),
        Binding("n", "demo_step(1)", "Next step"),
        Binding("N", "demo_step(-1)", "Prev step", show=False),
        Binding("tab", "focus_next", "Focus", show=False),
    ]

    def __init__(
        self,
        source: Source,
        *,
        demo: Scenario | None = None,
        load_duration: float = LIVE_DURATION,
    ) -> None:
        super().__init__()
        self.source = source
        self.demo = DemoPlayer(demo) if demo is not None else None
        self.load_duration = load_duration
        self.selected: WorkerKey | None = None
        self.last: Snapshot | None = None
        self.frozen = False
        self.startup_error: str | None = None
        self.first_frame_at: float | None = None  # monotonic time of the first drawn frame
        self.created_at = time.monotonic()
        self._quitting = False
        self._load_running = False
        self._busy: str | None = "starting…"

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        narration = NarrationPanel(id="narration")
        narration.display = self.demo is not None
        yield narration
        yield DiagnosisBanner(id="banner")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                with Vertical(id="scoreboard-panel"):
                    yield ScoreboardGrid(id="grid")
                    yield ScoreboardLegend(id="legend")
                yield WorkerTable(id="workers")
            with Vertical(id="right"):
                yield ImbalancePanel(id="imbalance")
                yield BacklogPanel(id="backlog")
                yield ClientPanel(id="client")
        yield EventLog(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#scoreboard-panel").border_title = "scoreboard"
        self.query_one("#imbalance").border_title = "imbalance"
        self.query_one("#backlog").border_title = "accept queues"
        self.query_one("#client").border_title = "clients see"
        self.query_one("#events").border_title = "events"
        self.query_one("#workers").border_title = "workers"
        self._update_header()
        if self.source.live:
            self.query_one(DiagnosisBanner).status(f"starting {self._model_desc()}…")
        self.query_one(WorkerTable).focus()
        self._install_signal_handlers()
        self._pump()

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
                self.source.close()
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

    # -- the sampling loop --------------------------------------------------------------
    @work(exclusive=True, group="pump")
    async def _pump(self) -> None:
        if self.source.live:
            try:
                await asyncio.to_thread(self.source.start)
            except START_ERRORS as e:
                self.startup_error = str(e)
                await asyncio.to_thread(self.source.close)
                self.exit(2, return_code=2)
                return
            self._busy = None
            if self.demo is not None:
                self.demo.begin()
        else:
            self._busy = None
        while not self._quitting:
            began = time.monotonic()
            try:
                snap = await asyncio.to_thread(self.source.next)
            except Exception as e:  # a sample must never take the UI down
                self.source.log("error", f"sampling failed: {e}")
                snap = None
            if self._quitting:
                return
            if snap is not None and not self.frozen:
                self._draw(snap)
            elif snap is None and self.source.live:
                self._draw_events()
            if self.demo is not None:
                self._demo_tick()
            spent = time.monotonic() - began
            await asyncio.sleep(max(0.02, self.source.period - spent))

    # -- drawing ------------------------------------------------------------------------
    def _frame(self, snap: Snapshot) -> Frame:
        keys = {w.key for w in snap.workers}
        if self.selected not in keys:
            self.selected = _pick_worker(snap, self.selected)
        paused = frozenset(self.source.session.paused_pids) if self.source.live else frozenset()  # type: ignore[attr-defined]
        return Frame(snap, self.source.history(), self.selected, paused)

    def _draw(self, snap: Snapshot) -> None:
        self.last = snap
        frame = self._frame(snap)
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
        self.query_one(ScoreboardGrid).show(frame)
        panel = self.query_one("#scoreboard-panel")
        title = summary(frame, panel.size.width)
        if panel.border_title != title:  # (setting it redraws the panel)
            panel.border_title = title
        self.query_one(WorkerTable).show(frame)
        self.query_one(ImbalancePanel).show(frame)
        self.query_one(BacklogPanel).show(frame)
        self.query_one(ClientPanel).show(frame)
        banner = self.query_one(DiagnosisBanner)
        if self._busy:
            banner.status(self._busy)
        else:
            banner.show(frame)
        self._note_load_end(snap)
        self._draw_events()
        self._update_header()

    def _redraw(self) -> None:
        if self.last is not None:
            self._draw(self.last)

    def _draw_events(self) -> None:
        self.query_one(EventLog).show(self.source.events(), self.source.t0)

    def _note_load_end(self, snap: Snapshot) -> None:
        c = snap.client
        running = bool(c is not None and c.running)
        ended = c is not None and not running and c.elapsed > 0.5 and c.requests > 0
        if self.source.live and self._load_running and ended and c is not None:
            self.source.log("load", f"load ended after {c.elapsed:.0f} s: g runs it again")
        self._load_running = running

    def _model_desc(self) -> str:
        if isinstance(self.source, LiveSource):
            return self.source.session.describe_model()
        if self.last is not None and self.last.model is not None:
            return self.last.model.name
        return ""

    def _update_header(self) -> None:
        src = self.source
        if isinstance(src, LiveSource):
            level = src.session.level
            load = "no load" if level is None else f"{level.name} · {_clients(level)}"
            state = "running" if src.session.supervisor is not None else "stopped"
            if self.frozen:
                state = "display frozen"
            sub = f"{src.session.describe_model()} · {load} · {state}"
        elif isinstance(src, ReplaySource):
            mark = "▶" if src.playing else "⏸"
            model = self.last.model.name if self.last and self.last.model else ""
            sub = f"replay {src.name} · {model} · {mark} {src.position_s:.1f}/{src.length_s:.1f} s"
        else:
            sub = ""
        if self.sub_title != sub:
            self.sub_title = sub

    # -- selection ----------------------------------------------------------------------
    @on(WorkerSelected)
    def _worker_selected(self, message: WorkerSelected) -> None:
        if message.key != self.selected and self.last is not None:
            self.selected = message.key
            frame = self._frame(self.last)  # only the widgets that show the selection
            self.query_one(ScoreboardGrid).show(frame)
            self.query_one(WorkerTable).show(frame)

    def selected_pid(self) -> int | None:
        if self.last is None:
            return None
        for w in self.last.workers:
            if w.key == self.selected and w.state not in ("empty", "dead"):
                return w.pid
        return None

    # -- which keys apply ---------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in LIVE_ACTIONS or action == "freeze":
            return self.source.live
        if action in REPLAY_ACTIONS:
            return self.source.seekable
        if action in DEMO_ACTIONS:
            return self.demo is not None
        return True

    # -- live controls ------------------------------------------------------------------
    @property
    def session(self) -> Session:
        assert isinstance(self.source, LiveSource)
        return self.source.session

    def action_model(self) -> None:
        self.push_screen(ModelScreen(self.session.config), self._model_chosen)

    def _model_chosen(self, cfg: ServerConfig | None) -> None:
        if cfg is not None:
            self.switch_model(cfg)

    def switch_model(self, cfg: ServerConfig) -> None:
        self._busy = f"starting {cfg.model}…"
        self.query_one(DiagnosisBanner).status(self._busy)
        self._control(lambda: self.session.restart(config=cfg), f"{cfg.model} did not start")

    def action_load(self) -> None:
        self.push_screen(LoadScreen(self.session.level, self.load_duration), self._load_chosen)

    def _load_chosen(self, level: LoadLevel | bool | None) -> None:
        if level is False:
            return
        self.set_load(level if isinstance(level, LoadLevel) else None)

    def set_load(self, level: LoadLevel | None) -> None:
        self._control(lambda: self.session.set_level(level), "the load did not change")

    def action_clients(self, factor: float) -> None:
        level = self.session.level
        if level is None:
            self.notify("no load: l chooses one", severity="warning")
            return
        n = max(1, min(100_000, round(level.clients * factor)))
        if n != level.clients:
            self.set_load(level.with_(clients=n))

    def action_rerun(self) -> None:
        level = self.session.level or PRESETS["burst"].with_(duration=self.load_duration)
        self.set_load(level)

    def action_restart(self) -> None:
        self._busy = f"restarting {self.session.config.model}…"
        self.query_one(DiagnosisBanner).status(self._busy)
        self._control(self.session.restart, "restart failed")

    def action_start_stop(self) -> None:
        if self.session.supervisor is not None:
            self._busy = "stopped: s starts it again, m picks another model"
            self.query_one(DiagnosisBanner).status(self._busy)
            self._control(self.session.stop, "stop failed", keep_status=True)
        else:
            self._busy = f"starting {self.session.config.model}…"
            self.query_one(DiagnosisBanner).status(self._busy)
            self._control(self.session.start, "start failed")

    def action_pause_load(self) -> None:
        c = self.last.client if self.last else None
        paused = bool(c and c.paused)
        self._control(lambda: self.session.pause_load(not paused), "pause failed")

    @work(thread=True, group="control")
    def _control(self, fn: object, failure: str, keep_status: bool = False) -> None:
        try:
            fn()  # type: ignore[operator]
        except START_ERRORS as e:
            self.source.log("error", f"{failure}: {e}")
            self.call_from_thread(self.notify, f"{failure}: {e}", severity="error")
            self._busy = f"{failure}: {e} (m: choose another model, r: retry)"
        else:
            if not keep_status:
                self._busy = None
        finally:
            self.call_from_thread(self._after_control)

    def _after_control(self) -> None:
        if self._busy:
            self.query_one(DiagnosisBanner).status(self._busy, error="failed" in self._busy)
        if isinstance(self.source, LiveSource) and self.session.supervisor is None:
            # no more snapshots: the last one's "4 workers · 2 busy" would be a lie
            self.query_one("#scoreboard-panel").border_title = "scoreboard · stopped"
        self._update_header()
        self._draw_events()
        self.refresh_bindings()
        if self.demo is not None and self.demo.started is None and self._busy is None:
            self.demo.begin()

    def action_fault(self, action: str) -> None:
        self.fault(action)

    def fault(self, action: str, pid: int | None = None) -> bool:
        """Pause/resume (SIGSTOP/SIGCONT), kill or burn the selected worker (or `pid`)."""
        pid = pid if pid is not None else self.selected_pid()
        if pid is None:
            self.notify("select a live worker first (arrows in the table or grid)")
            return False
        fn = {
            "pause": self.session.pause_worker,
            "kill": self.session.kill_worker,
            "burn": self.session.burn_worker,
        }[action]
        try:
            fn(pid)
        except (ValueError, OSError) as e:
            self.notify(str(e), severity="error")
            return False
        w = self._frame(self.last).selected_worker if self.last is not None else None
        if action == "pause" and w is not None and w.is_thread and w.pid == pid:
            paused = pid in self.session.paused_pids
            what = "paused" if paused else "resumed"
            self.notify(f"{what} pid {pid}: all its threads (a signal stops a whole process)")
        self._draw_events()
        self._redraw()
        return True

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self._update_header()
        if self.frozen:
            self.notify("display frozen: the lab keeps running (space resumes)")

    # -- replay controls ----------------------------------------------------------------
    def _replay(self) -> ReplaySource:
        assert isinstance(self.source, ReplaySource)
        return self.source

    def action_play(self) -> None:
        self._replay().toggle()
        self._update_header()

    def action_seek(self, seconds: float) -> None:
        src = self._replay()
        src.seek(seconds)
        self._draw(src.next() if not src.playing else src.current)

    def action_step(self, frames: int) -> None:
        src = self._replay()
        src.playing = False
        src.step(frames)
        self._draw(src.next())

    # -- demo ---------------------------------------------------------------------------
    def action_demo_step(self, delta: int) -> None:
        if self.demo is not None and self.demo.go(delta):
            self._start_demo_step()

    def _start_demo_step(self) -> None:
        assert self.demo is not None
        step = self.demo.step
        self.source.log("demo", f"step {self.demo.index + 1}: {step.title}")
        self._busy = f"starting {step.config.model} for step {self.demo.index + 1}…"
        self.query_one(DiagnosisBanner).status(self._busy)
        level = self.demo.level(step)
        self._control(
            lambda: self.session.restart(config=step.config, level=level), "step did not start"
        )

    def _demo_tick(self) -> None:
        d = self.demo
        assert d is not None
        self.query_one(NarrationPanel).show_step(d.scenario, d.index, d.remaining(), d.last)
        fault = d.take_fault()
        if fault is not None:
            session = self.session
            self.source.log("demo", "demo: " + apply_fault(session, fault))
        elif d.advance_due():
            d.go(1)
            self._start_demo_step()

    # -- the command palette ------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not self.source.live:
            return
        for spec in models.available():
            yield SystemCommand(
                f"Model: {spec.name}",
                spec.summary,
                lambda name=spec.name: self.switch_model(self.session.config.for_model(name)),
            )
        for name, level in PRESETS.items():
            yield SystemCommand(
                f"Load: {name}",
                PRESET_HELP.get(name, ""),
                lambda lv=level: self.set_load(lv.with_(duration=self.load_duration)),
            )
        yield SystemCommand("Choose the model and its knobs…", "m", self.action_model)
        yield SystemCommand("Choose the load…", "l: preset, clients, rate", self.action_load)
        yield SystemCommand(
            "Stop the load", "the server keeps running", lambda: self.set_load(None)
        )
        yield SystemCommand(
            "Pause / resume the load", "the clients hold still", self.action_pause_load
        )
        yield SystemCommand("Restart", "r: server and load from scratch", self.action_restart)
        yield SystemCommand(
            "Pause / resume the selected worker",
            "p: SIGSTOP / SIGCONT",
            lambda: self.fault("pause"),
        )
        yield SystemCommand("Kill the selected worker", "k: SIGKILL", lambda: self.fault("kill"))
        yield SystemCommand(
            "Burn CPU in the selected worker", "b: 3 s busy loop", lambda: self.fault("burn")
        )

    # -- quitting -----------------------------------------------------------------------
    async def action_quit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        if self.source.live:
            self.query_one(DiagnosisBanner).status("stopping the server and the load…")
        await asyncio.to_thread(self.source.close)
        self.exit(0)

    async def on_unmount(self) -> None:
        self._quitting = True
        self._remove_signal_handlers()
        await asyncio.to_thread(self.source.close)


def _clients(level: LoadLevel) -> str:
    rate = f" at {level.rate:g} req/s" if level.rate is not None else ""
    return f"{level.clients} clients{rate}"


def _pick_worker(snap: Snapshot, old: WorkerKey | None) -> WorkerKey | None:
    """Keep the selection on the same slot (a respawned worker), else the first live one."""
    live = snap.live_workers
    if old is not None:
        for w in live:
            if w.slot is not None and w.slot == old[0]:
                return w.key
    return live[0].key if live else None


# -- entry points ---------------------------------------------------------------------------


def run_live(
    config: ServerConfig,
    level: LoadLevel | None,
    *,
    record: str | None = None,
    load_duration: float = LIVE_DURATION,
    observers: Sequence[Callable[[Snapshot], None]] = (),
) -> tuple[int, str | None]:
    """Open the TUI on a live session; returns (exit code, startup error or None).
    `observers` are handed every snapshot too (e.g. the Prometheus exporter)."""
    session = Session(config, level, record=record)
    session.observers.extend(observers)
    source = LiveSource(session)
    app = ServerscopeApp(source, load_duration=load_duration)
    try:
        code = app.run()
    finally:
        source.close()
    if app.startup_error:
        return 2, app.startup_error
    return (code or app.return_code or 0), None


def run_replay(snapshots: list[Snapshot], name: str) -> int:
    app = ServerscopeApp(ReplaySource(snapshots, name=name))
    app.run()
    return app.return_code or 0


def run_demo(scenario: Scenario) -> tuple[int, str | None]:
    """Play a guided demo in the TUI (`serverscope demo NAME`); returns (code, error)."""
    player = DemoPlayer(scenario)
    step = player.step
    source = LiveSource(Session(step.config, player.level(step)))
    app = ServerscopeApp(source, demo=scenario)
    try:
        app.run()
    finally:
        source.close()
    if app.startup_error:
        return 2, app.startup_error
    return app.return_code or 0, None
