"""The model chooser: a modal with the model and only the knobs that model takes."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

import originals
from lab.server import model_spec
from servers import models
from servers.config import ConfigError, ServerConfig

from .chooser import ChooserScreen

# The knobs the chooser offers, in this order, with their labels (Apache's names too).
KNOBS: tuple[tuple[str, str], ...] = (
    ("workers", "workers (processes)"),
    ("threads_per_child", "ThreadsPerChild"),
    ("start_servers", "StartServers"),
    ("min_spare", "MinSpare"),
    ("max_spare", "MaxSpare"),
    ("max_workers", "MaxRequestWorkers"),
    ("async_factor", "AsyncRequestWorkerFactor"),
    ("request_read_timeout", "RequestReadTimeout"),
    ("backlog", "listen backlog"),
)
FLOAT_KNOBS = frozenset({"async_factor"})
TEXT_KNOBS = frozenset({"request_read_timeout"})  # passed as written; the model checks them
# a default too long for its field, said shorter
DEFAULT_TEXT = {"request_read_timeout": "default Apache's (header=20-40 body=20)"}


def model_options() -> list[tuple[str, str]]:
    """The nine Python models, then the seed's originals (run for real: C, Node, Go,
    Apache), each original marked with the Debian package it needs when that is missing."""
    have = {s.name: s for s in models.available()}
    out = []
    for name in models.MODEL_NAMES:
        spec = have.get(name)
        label = name if spec else f"{name} (not built yet)"
        out.append((label, name))
    for name in originals.NAMES:
        tool = originals.spec(name).toolchain
        out.append((name if tool.present else f"{name} (needs {tool.package})", name))
    return out


def knobs_of(name: str) -> list[tuple[str, str]]:
    try:
        taken = model_spec(name).knobs
    except (ConfigError, ModuleNotFoundError):
        taken = frozenset()
    return [(k, label) for k, label in KNOBS if k in taken or k == "backlog"]


def build_config(
    base: ServerConfig, model: str, values: dict[str, str], exclusive: bool
) -> ServerConfig:
    """The config the form describes, checked by the model; raises ConfigError (one line)."""
    try:
        spec = model_spec(model)
    except ModuleNotFoundError:
        raise ConfigError(f"model {model} is not built yet") from None
    cfg = base.for_model(model).with_(exclusive=exclusive and "exclusive" in spec.knobs)
    changes: dict[str, object] = {}
    for key, text in values.items():
        text = text.strip()
        label = "--" + key.replace("_", "-")
        if not text:
            if key == "backlog":
                raise ConfigError(f"{label} needs a value")
            continue
        if key in TEXT_KNOBS:
            changes[key] = text
            continue
        try:
            changes[key] = float(text) if key in FLOAT_KNOBS else int(text)
        except ValueError:
            kind = "a number" if key in FLOAT_KNOBS else "a whole number"
            raise ConfigError(f"{label} must be {kind}, got {text!r}") from None
    cfg = cfg.with_(**changes)
    spec.resolve(cfg)  # range checks; raises ConfigError
    return cfg


def _knob_text(value: object) -> str:
    """A knob's current value as its field shows it (empty: the model's default)."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


class ModelScreen(ChooserScreen[ServerConfig | None]):
    """Dismisses with the new (checked) ServerConfig, or None when cancelled."""

    CANCELLED = None

    def __init__(self, current: ServerConfig) -> None:
        super().__init__()
        self.current = current
        self._shown: str | None = None
        self.knobs_for: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Model", classes="dialog-title")
            yield Select(
                model_options(),
                value=self.current.model,
                allow_blank=False,
                id="model-select",
                compact=True,
            )
            yield Static(id="model-summary", classes="dialog-help")
            yield Grid(id="knobs")
            yield Checkbox("EPOLLEXCLUSIVE (as nginx)", self.current.exclusive, id="exclusive")
            yield Label("", id="model-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    async def on_mount(self) -> None:
        await self._show_knobs(self.current.model)

    @on(Select.Changed, "#model-select")
    async def _model_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self._shown:
            await self._show_knobs(event.value)

    async def _show_knobs(self, name: str) -> None:
        self._shown = name
        try:
            spec = model_spec(name)
            summary, defaults, taken = spec.summary, spec.defaults, spec.knobs
        except (ConfigError, ModuleNotFoundError):
            summary, defaults, taken = "not built yet", {}, frozenset()
        self.query_one("#model-summary", Static).update(summary)
        grid = self.query_one("#knobs", Grid)
        await grid.remove_children()
        same = name == self.current.model
        widgets: list[Widget] = []
        for key, label in knobs_of(name):
            value = getattr(self.current, key) if same or key == "backlog" else None
            default = defaults.get(key)
            placeholder = f"default {default}" if default is not None else ""
            widgets.append(Label(label))
            widgets.append(
                Input(
                    _knob_text(value),
                    placeholder=DEFAULT_TEXT.get(key, placeholder) if placeholder else "",
                    id=f"knob-{key}",
                    compact=True,
                )
            )
        await grid.mount_all(widgets)
        self.knobs_for = name  # the knob fields now on screen are this model's
        self.query_one("#exclusive", Checkbox).display = "exclusive" in taken
        self.query_one("#model-error", Label).update("")

    def _values(self) -> dict[str, str]:
        return {
            inp.id.removeprefix("knob-"): inp.value
            for inp in self.query("#knobs Input").results(Input)
            if inp.id
        }

    def action_apply(self) -> None:
        model = self.query_one("#model-select", Select).value
        if not isinstance(model, str):
            return
        try:
            cfg = build_config(
                self.current, model, self._values(), self.query_one("#exclusive", Checkbox).value
            )
        except ConfigError as e:
            self.query_one("#model-error", Label).update(str(e))
            return
        self.dismiss(cfg)
