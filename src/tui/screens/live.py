"""The live lab: the main screen plus keys that drive a Session (model, load, faults).

Blocking calls (start, restart, set_level) run in a thread worker, so keys are answered
while a server starts; the banner says what is going on until the next frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import ClassVar

from textual import work
from textual.app import SystemCommand
from textual.binding import Binding, BindingType

from lab.fix import NothingToFix, choose, paused_fault
from lab.scenarios import Fault
from lab.server import ConfigError, ServerConfig, ServerError, catalogue
from lab.session import LIVE_DURATION, Session
from loadgen.levels import PRESET_HELP, PRESETS, LoadError, LoadLevel
from loadgen.options import LOAD_OPTION
from values.snapshot import Snapshot

from ..diagnosis_banner import DiagnosisBanner
from ..source import LiveSource
from .fix import FixScreen
from .lab import LabScreen
from .load import LoadScreen
from .model import ModelScreen

START_ERRORS = (ServerError, ConfigError, LoadError, OSError)
MAX_CLIENTS = int(LOAD_OPTION["clients"].high or 1)  # what + can double the load to
FIX_SECONDS = 10.0  # each side of f's before and after
FIX_STOP_S = 15.0  # quitting waits this long at most for a fix's runs to stop


class LiveScreen(LabScreen):
    source: LiveSource

    BINDINGS: ClassVar[list[BindingType]] = [
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
        Binding("f", "fix", "Fix", tooltip="run this setup and its remedy; before and after"),
    ]

    def __init__(
        self,
        source: LiveSource,
        *,
        load_duration: float = LIVE_DURATION,
        fix_seconds: float = FIX_SECONDS,
    ) -> None:
        super().__init__(source)
        self.fix_seconds = fix_seconds
        self.fixing: FixScreen | None = None
        self.session: Session = source.session
        self.load_duration = load_duration
        self.startup_error: str | None = None
        self.busy = f"starting {self.session.describe_model()}…"
        self._load_running = False

    async def start(self) -> bool:
        try:
            await asyncio.to_thread(self.source.start)
        except START_ERRORS as e:
            self.startup_error = str(e)
            await asyncio.to_thread(self.source.close)
            self.app.exit(2, return_code=2)
            return False
        self.busy = None
        return True

    def paused_pids(self) -> frozenset[int]:
        return frozenset(self.session.paused_pids)

    def subtitle(self) -> str:
        level = self.session.level
        load = "no load" if level is None else f"{level.name} · {_clients(level)}"
        state = "running" if self.session.server is not None else "stopped"
        if self.frozen:
            state = "display frozen"
        cost = self.sampling_cost()
        tail = f" · {cost}" if cost and self.session.server is not None else ""
        return f"{self.session.describe_model()} · {load} · {state}{tail}"

    def closing(self) -> None:
        self.query_one(DiagnosisBanner).status("stopping the server and the load…")
        if self.fixing is not None:
            self.fixing.stop.set()

    def finish(self) -> None:
        if self.fixing is not None:  # its runs end within a sample period of the stop
            self.fixing.done.wait(FIX_STOP_S)

    def draw(self, snap: Snapshot) -> None:
        if self.session.server is None:
            return  # a sample taken as the server stopped: the stopped screen stays
        self._note_load_end(snap)
        super().draw(snap)

    def _note_load_end(self, snap: Snapshot) -> None:
        client = snap.client
        running = bool(client is not None and client.running)
        ended = client is not None and not running and client.elapsed > 0.5 and client.requests > 0
        if self._load_running and ended and client is not None:
            self.source.log("load", f"load ended after {client.elapsed:.0f} s: g runs it again")
        self._load_running = running

    # -- model and load -----------------------------------------------------------------
    def action_model(self) -> None:
        self.app.push_screen(ModelScreen(self.session.config), self._model_chosen)

    def _model_chosen(self, cfg: ServerConfig | None) -> None:
        if cfg is not None:
            self.switch_model(cfg)

    def switch_model(self, cfg: ServerConfig) -> None:
        self.status(f"starting {cfg.model}…")
        self.control(lambda: self.session.restart(config=cfg), f"{cfg.model} did not start")

    def action_load(self) -> None:
        self.app.push_screen(LoadScreen(self.session.level, self.load_duration), self._load_chosen)

    def _load_chosen(self, level: LoadLevel | bool | None) -> None:
        if level is False:
            return
        # a load chosen in the dialog starts anew, as its preset says (burst: at once)
        self.set_load(level if isinstance(level, LoadLevel) else None, fresh=True)

    def set_load(self, level: LoadLevel | None, *, fresh: bool = False) -> None:
        self.control(lambda: self.session.set_level(level, fresh=fresh), "the load did not change")

    def action_clients(self, factor: float) -> None:
        level = self.session.level
        if level is None:
            self.notify("no load: l chooses one", severity="warning")
            return
        clients = max(1, min(MAX_CLIENTS, round(level.clients * factor)))
        if clients != level.clients:
            self.set_load(level.with_(clients=clients))

    def action_rerun(self) -> None:
        level = self.session.level or PRESETS["burst"].with_(duration=self.load_duration)
        self.set_load(level, fresh=True)

    def action_restart(self) -> None:
        self.status(f"restarting {self.session.config.model}…")
        self.control(self.session.restart, "restart failed")

    def action_start_stop(self) -> None:
        if self.session.server is not None:
            self.status("stopped: s starts it again, m picks another model")
            self.control(self.session.stop, "stop failed", keep_status=True)
        else:
            self.status(f"starting {self.session.config.model}…")
            self.control(self.session.start, "start failed")

    def action_pause_load(self) -> None:
        client = self.last.client if self.last else None
        paused = bool(client and client.paused)
        self.control(lambda: self.session.pause_load(not paused), "pause failed")

    @work(thread=True, group="control")
    def control(self, fn: Callable[[], object], failure: str, keep_status: bool = False) -> None:
        """Run a blocking session call; a failure is logged, notified and bannered."""
        try:
            fn()
        except START_ERRORS as e:
            self.source.log("error", f"{failure}: {e}")
            self.app.call_from_thread(self.notify, f"{failure}: {e}", severity="error")
            self.busy = f"{failure}: {e} (m: choose another model, r: retry)"
        else:
            if not keep_status:
                self.busy = None
        finally:
            self.app.call_from_thread(self.after_control)

    def after_control(self) -> None:
        if self.busy:
            self.query_one(DiagnosisBanner).status(self.busy, error="failed" in self.busy)
        if self.session.server is None:
            # no more snapshots: the last one's "4 workers · 2 busy" would be a lie
            self.draw_stopped("server and load stopped", "s starts them again, m another model")
        self.update_header()
        self.draw_events()
        self.refresh_bindings()

    # -- fix ----------------------------------------------------------------------------
    def action_fix(self) -> None:
        """The setup on screen and its remedy for the diagnosis on screen, each run anew
        under the same load for fix_seconds, then before and after with the verdict."""
        snap, level = self.last, self.session.level
        seen = [(d.rule, d.message) for d in snap.diagnoses] if snap is not None else []
        if level is None:
            self.notify("no load: l chooses one, then f once a diagnosis shows", severity="warning")
            return
        try:
            choose(self.session.config, seen)
        except NothingToFix as e:
            self.notify(str(e).split(";")[0] + ": nothing to fix here", severity="warning")
            return
        self.status("fix: stopping the lab's server so that the runs have the machine…")
        fault = paused_fault(snap, self.session.paused_pids)  # `p`: both runs pause it too
        self._open_fix(self.session.config, level.with_(duration=self.fix_seconds), seen, fault)

    @work(thread=True, group="control")
    def _open_fix(
        self,
        cfg: ServerConfig,
        level: LoadLevel,
        seen: list[tuple[str, str]],
        fault: Fault | None = None,
    ) -> None:
        try:
            self.session.stop()
        except START_ERRORS as e:
            self.source.log("error", f"stop failed: {e}")
        self.fixing = FixScreen(cfg, level, seen, period=self.session.period, fault=fault)
        self.app.call_from_thread(self.app.push_screen, self.fixing, self._fixed)

    def _fixed(self, remedy: ServerConfig | None) -> None:
        """Back from the fix screen: the lab as it was, or on the remedy (`a`)."""
        if remedy is not None:
            self.switch_model(remedy)
        else:
            self.status(f"starting {self.session.config.model} again…")
            self.control(self.session.start, "start failed")

    # -- faults -------------------------------------------------------------------------
    def action_fault(self, action: str) -> None:
        self.fault(action)

    def fault(self, action: str, pid: int | None = None) -> bool:
        """Pause/resume (SIGSTOP/SIGCONT), kill or burn the selected worker (or `pid`)."""
        pid = pid if pid is not None else self.selected_pid()
        if pid is None:
            self.notify("select a live worker first (arrows in the table or grid)")
            return False
        act = {
            "pause": self.session.pause_worker,
            "kill": self.session.kill_worker,
            "burn": self.session.burn_worker,
        }[action]
        try:
            act(pid)
        except (ValueError, OSError) as e:
            self.notify(str(e), severity="error")
            return False
        worker = self.selected_worker()
        if action == "pause" and worker is not None and worker.is_thread and worker.pid == pid:
            what = "paused" if pid in self.session.paused_pids else "resumed"
            self.notify(f"{what} pid {pid}: all its threads (a signal stops a whole process)")
        self.draw_events()
        self.redraw()
        return True

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self.update_header()
        if self.frozen:
            self.notify("display frozen: the lab keeps running (space resumes)")

    # -- the command palette ------------------------------------------------------------
    def system_commands(self) -> Iterable[SystemCommand]:
        for e in catalogue():
            if not e.present:
                continue  # an original whose toolchain is missing here
            yield SystemCommand(
                f"Model: {e.name}",
                e.summary,
                lambda name=e.name: self.switch_model(self.session.config.for_model(name)),
            )
        for name, level in PRESETS.items():
            yield SystemCommand(
                f"Load: {name}",
                PRESET_HELP.get(name, ""),
                lambda preset=level: self.set_load(
                    preset.with_(duration=self.load_duration), fresh=True
                ),
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


def _clients(level: LoadLevel) -> str:
    rate = f" at {level.rate:g} req/s" if level.rate is not None else ""
    return f"{level.clients} clients{rate}"
