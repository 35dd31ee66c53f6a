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
        with Vertical(id="dialog"):
            yield Label("Load", classes="dialog-title")
            yield Select(
                load_options(), value=name, allow_blank=False, id="load-select", compact=True
            )
            yield Static(PRESET_HELP.get(name, ""), id="load-help", classes="dialog-help")
            with Grid(id="knobs"):
                yield Label("clients")
                yield Input(
                    str(cur.clients if cur else PRESETS[name].clients), id="clients", compact=True
                )
                yield Label("rate, req/s")
                yield Input(
                    "" if cur is None or cur.rate is None else f"{cur.rate:g}",
                    placeholder="empty: closed loop",
                    id="rate",
                    compact=True,
                )
                yield Label("duration, s")
                yield Input(
                    f"{cur.duration if cur else self.duration:g}", id="duration", compact=True
                )
            yield Label("", id="load-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    @on(Select.Changed, "#load-select")
    def _preset_changed(self, event: Select.Changed) -> None:
        name = event.value
        if not isinstance(name, str):
            return
        self.query_one("#load-help", Static).update(
            PRESET_HELP.get(name, "stop the load generator; the server keeps running")
        )
        if name in PRESETS:
            p = PRESETS[name]
            if self.current is None or self.current.name != name:
                self.query_one("#clients", Input).value = str(p.clients)
                self.query_one("#rate", Input).value = "" if p.rate is None else f"{p.rate:g}"
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
