"""The load chooser: a preset, then clients and rate; applied live to the running load."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from loadgen.levels import PRESET_HELP, PRESETS, LoadError, LoadLevel
from loadgen.options import LOAD_OPTIONS

from .chooser import ChooserScreen

NO_LOAD = "none"
FIELDS = tuple(o for o in LOAD_OPTIONS if o.chooser)  # the table's chooser column, in order


def load_options() -> list[tuple[str, str]]:
    return [(name, name) for name in PRESETS] + [("none (stop the load)", NO_LOAD)]


def build_level(preset: str, values: dict[str, str]) -> LoadLevel | None:
    """The level the form describes (None: no load); raises LoadError with one line naming
    the option. An empty field is the preset's value, or none where none is allowed (an
    empty rate: closed loop)."""
    if preset == NO_LOAD:
        return None
    base = PRESETS[preset]
    changes: dict[str, object] = {}
    for option in FIELDS:
        text = values.get(option.name, "").strip()
        if not text:
            changes[option.name] = None if option.none_means else getattr(base, option.name)
            continue
        try:
            changes[option.name] = option.parse(text)
        except ValueError as e:
            raise LoadError(f"{option.option}: {e}") from None
    return base.with_(**changes).check()


def describe_form(preset: str, values: dict[str, str]) -> str:
    """The help line under the preset: the preset's own while the fields hold its figures,
    else what the fields describe ("steady" with its rate set to 50 said "open loop 200
    req/s" above a rate field of 50)."""
    if preset not in PRESETS:
        return PRESET_HELP.get(preset, "stop the load generator; the server keeps running")
    try:
        level = build_level(preset, values)
    except LoadError:
        return PRESET_HELP.get(preset, "")  # the error line below says what is wrong
    base = PRESETS[preset]
    shown = [o.name for o in FIELDS if o.name != "duration"]  # a duration is no change
    if level is not None and any(getattr(level, n) != getattr(base, n) for n in shown):
        return f"{preset}, changed: {level.describe()}"
    return PRESET_HELP.get(preset, "")


def _text(value: object) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


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
        shown = cur if cur is not None else PRESETS[name].with_(duration=self.duration)
        values = {o.name: _text(getattr(shown, o.name)) for o in FIELDS}
        with Vertical(id="dialog"):
            yield Label("Load", classes="dialog-title")
            yield Select(
                load_options(), value=name, allow_blank=False, id="load-select", compact=True
            )
            help_line = describe_form(name, values)
            yield Static(help_line, id="load-help", classes="dialog-help")
            with Grid(id="knobs"):
                for o in FIELDS:
                    yield Label(o.shown_label)
                    empty = f"empty: {o.none_means}" if o.none_means else ""
                    yield Input(values[o.name], placeholder=empty, id=o.name, compact=True)
            yield Label("", id="load-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def _fields(self) -> dict[str, str]:
        return {o.name: self.query_one(f"#{o.name}", Input).value for o in FIELDS}

    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed) -> None:
        name = self.query_one("#load-select", Select).value
        if isinstance(name, str):
            self.query_one("#load-help", Static).update(describe_form(name, self._fields()))

    @on(Select.Changed, "#load-select")
    def _preset_changed(self, event: Select.Changed) -> None:
        name = event.value
        if not isinstance(name, str):
            return
        if name in PRESETS:
            p = PRESETS[name]
            if self.current is None or self.current.name != name:
                for o in FIELDS:
                    if o.name != "duration":  # the lab's duration stays
                        self.query_one(f"#{o.name}", Input).value = _text(getattr(p, o.name))
        self.query_one("#load-help", Static).update(describe_form(name, self._fields()))
        self.query_one("#load-error", Label).update("")

    def action_apply(self) -> None:
        name = self.query_one("#load-select", Select).value
        if not isinstance(name, str):
            return
        try:
            level = build_level(name, self._fields())
        except LoadError as e:
            self.query_one("#load-error", Label).update(str(e))
            return
        self.dismiss(level)
