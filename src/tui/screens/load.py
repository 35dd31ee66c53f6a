"""The load chooser: a preset, then clients and rate; applied live to the running load."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from loadgen.levels import PRESET_HELP, PRESETS, LoadError, LoadLevel

from .chooser import ChooserScreen

NO_LOAD = "none"


def load_options() -> list[tuple[str, str]]:
    return [(name, name) for name in PRESETS] + [("none (stop the load)", NO_LOAD)]


def build_level(preset: str, clients: str, rate: str, duration: str) -> LoadLevel | None:
    """The level the form describes (None: no load); raises LoadError with one line."""
    if preset == NO_LOAD:
        return None
    base = PRESETS[preset]
    try:
        n = int(clients) if clients.strip() else base.clients
    except ValueError:
        raise LoadError(f"clients must be a whole number, got {clients!r}") from None
    try:
        r = float(rate) if rate.strip() else None
    except ValueError:
        raise LoadError(
            f"rate must be a number of req/s (or empty: closed loop), got {rate!r}"
        ) from None
    try:
        d = float(duration) if duration.strip() else base.duration
    except ValueError:
        raise LoadError(f"duration must be seconds, got {duration!r}") from None
    return base.with_(clients=n, rate=r, duration=d).check()


def describe_form(preset: str, clients: str, rate: str, duration: str) -> str:
    """The help line under the preset: the preset's own while the fields hold its figures,
    else what the fields describe ("steady" with its rate set to 50 said "open loop 200
    req/s" above a rate field of 50)."""
    if preset not in PRESETS:
        return PRESET_HELP.get(preset, "stop the load generator; the server keeps running")
    try:
        level = build_level(preset, clients, rate, duration)
    except LoadError:
        return PRESET_HELP.get(preset, "")  # the error line below says what is wrong
    base = PRESETS[preset]
    if level is not None and (level.clients, level.rate) != (base.clients, base.rate):
        return f"{preset}, changed: {level.describe()}"
    return PRESET_HELP.get(preset, "")


class LoadScreen(ChooserScreen[LoadLevel | None | bool]):
    """Dismisses with the new LoadLevel, None for 'no load', or False when cancelled."""

    CANCELLED = False

    def __init__(self, current: LoadLevel | None, duration: float) -> None:
        super().__init__()
        self.current = current
        self.duration = duration

    def compose(self) -> ComposeResult:
        cur = self.current
        name = cur.name if cur is not None and cur.name in PRESETS else "burst"
        clients = str(cur.clients if cur else PRESETS[name].clients)
        rate = "" if cur is None or cur.rate is None else f"{cur.rate:g}"
        duration = f"{cur.duration if cur else self.duration:g}"
        with Vertical(id="dialog"):
            yield Label("Load", classes="dialog-title")
            yield Select(
                load_options(), value=name, allow_blank=False, id="load-select", compact=True
            )
            help_line = describe_form(name, clients, rate, duration)
            yield Static(help_line, id="load-help", classes="dialog-help")
            with Grid(id="knobs"):
                yield Label("clients")
                yield Input(clients, id="clients", compact=True)
                yield Label("rate, req/s")
                yield Input(rate, placeholder="empty: closed loop", id="rate", compact=True)
                yield Label("duration, s")
                yield Input(duration, id="duration", compact=True)
            yield Label("", id="load-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def _fields(self) -> tuple[str, str, str]:
        return tuple(  # type: ignore[return-value]
            self.query_one(f"#{key}", Input).value for key in ("clients", "rate", "duration")
        )

    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed) -> None:
        name = self.query_one("#load-select", Select).value
        if isinstance(name, str):
            self.query_one("#load-help", Static).update(describe_form(name, *self._fields()))

    @on(Select.Changed, "#load-select")
    def _preset_changed(self, event: Select.Changed) -> None:
        name = event.value
        if not isinstance(name, str):
            return
        if name in PRESETS:
            p = PRESETS[name]
            if self.current is None or self.current.name != name:
                self.query_one("#clients", Input).value = str(p.clients)
                self.query_one("#rate", Input).value = "" if p.rate is None else f"{p.rate:g}"
        self.query_one("#load-help", Static).update(describe_form(name, *self._fields()))
        self.query_one("#load-error", Label).update("")

    def action_apply(self) -> None:
        name = self.query_one("#load-select", Select).value
        if not isinstance(name, str):
            return
        try:
            level = build_level(
                name,
                self.query_one("#clients", Input).value,
                self.query_one("#rate", Input).value,
                self.query_one("#duration", Input).value,
            )
        except LoadError as e:
            self.query_one("#load-error", Label).update(str(e))
            return
        self.dismiss(level)
