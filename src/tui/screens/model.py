"""The model chooser: a modal with the model and only the knobs that model takes."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from lab.server import KNOB, KNOBS, ConfigError, ModelEntry, ServerConfig, catalogue, entry

from .chooser import ChooserScreen

# The knobs the chooser offers (the table's chooser column), in the table's order; a switch
# (EPOLLEXCLUSIVE) is the checkbox under the fields.
FIELDS = tuple(k for k in KNOBS if k.chooser and k.kind is not bool)
SWITCHES = tuple(k for k in KNOBS if k.chooser and k.kind is bool)


def model_options() -> list[tuple[str, str]]:
    """The nine Python models, then the seed's originals (run for real: C, Node, Go,
    Apache), each original marked with the Debian package it needs when that is missing."""
    return [(e.name if e.present else f"{e.name} (needs {e.package})", e.name) for e in catalogue()]


def _entry(name: str) -> ModelEntry | None:
    try:
        return entry(name)
    except (ConfigError, ModuleNotFoundError):
        return None


def knobs_of(name: str) -> list[tuple[str, str]]:
    """(knob, label) of the fields the chooser shows for `name`: the knobs it takes."""
    e = _entry(name)
    return [(k.name, k.shown_label) for k in FIELDS if e is not None and e.takes(k.name)]


def build_config(
    base: ServerConfig, model: str, values: dict[str, str], switches: dict[str, bool]
) -> ServerConfig:
    """The config the form describes (its fields' text, its switches' states), checked by
    the model; raises ConfigError (one line naming the knob's flag)."""
    try:
        spec = entry(model).spec
    except ModuleNotFoundError:
        raise ConfigError(f"model {model} is not built yet") from None
    on = {k: v and spec.takes(k) for k, v in switches.items()}  # a hidden box is off
    cfg = base.for_model(model).with_(**on)
    changes: dict[str, object] = {}
    known = {k.name: k for k in FIELDS}
    for key, text in values.items():
        knob = known[key]
        text = text.strip()
        if not text:
            if knob.default is not None and not knob.per_model:  # every model's: no gap
                raise ConfigError(f"{knob.option} needs a value")
            continue
        try:
            changes[key] = knob.parse(text)
        except ValueError as e:
            raise ConfigError(f"{knob.option}: {e}") from None
    cfg = cfg.with_(**changes)
    spec.resolve(cfg)  # range checks; raises ConfigError
    return cfg


def _knob_text(value: object) -> str:
    """A knob's current value as its field shows it (empty: the model's default)."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _placeholder(e: ModelEntry, name: str) -> str:
    """The default an empty field takes here, shortened to fit (RequestReadTimeout's rules
    without their MinRate parts)."""
    value = e.default(name)
    if value is None:
        return ""
    text = KNOB[name].show(value)
    return "default " + " ".join(part.split(",")[0] for part in text.split())


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
            for k in SWITCHES:
                yield Checkbox(k.shown_label, getattr(self.current, k.name), id=k.name)
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
        e = _entry(name)
        self.query_one("#model-summary", Static).update(e.summary if e else "not built yet")
        grid = self.query_one("#knobs", Grid)
        await grid.remove_children()
        same = name == self.current.model
        widgets: list[Widget] = []
        for knob in FIELDS:
            if e is None or not e.takes(knob.name):
                continue
            kept = same or not knob.per_model  # every model's knob keeps its value
            value = getattr(self.current, knob.name) if kept else None
            widgets.append(Label(knob.shown_label))
            widgets.append(
                Input(
                    _knob_text(value),
                    placeholder=_placeholder(e, knob.name),
                    id=f"knob-{knob.name}",
                    compact=True,
                )
            )
        await grid.mount_all(widgets)
        self.knobs_for = name  # the knob fields now on screen are this model's
        for k in SWITCHES:
            self.query_one(f"#{k.name}", Checkbox).display = e is not None and e.takes(k.name)
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
            switches = {k.name: self.query_one(f"#{k.name}", Checkbox).value for k in SWITCHES}
            cfg = build_config(self.current, model, self._values(), switches)
        except ConfigError as e:
            self.query_one("#model-error", Label).update(str(e))
            return
        self.dismiss(cfg)
