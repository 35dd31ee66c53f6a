"""One row per setting: what the command line, the TUI's dialogs, the range checks and the
docs each say of a model knob (`servers.knobs`) or a load option (`loadgen.options`).

Every setting is declared once, in a table of these rows (gunicorn's config.py keeps one
place per setting the same way, as classes; here a row is data). The argparse options
(`commands.common`), the choosers' fields and labels (`tui.screens`), the one-line
messages for a bad value and `docs/knobs.md` are all read from the rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

UNIT_WORDS = {"s": "seconds"}  # how a unit is said in a message ("more than 0 seconds")
METAVARS = {"s": "S", "ms": "MS", "req/s": "R"}


def figure(value: float) -> str:
    """A number as a person writes it: 16777216, not 1.67772e+07; 0.05 as 0.05."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class Setting:
    name: str  # the field it sets (ServerConfig's, LoadLevel's)
    kind: type  # int, float, str, or bool (a switch)
    help: str  # what it does, in a line (its default and range are columns, not words)
    default: object = None  # None: none (the model's own, or the option's `none_means`)
    low: float | None = None  # the range, both ends included...
    high: float | None = None
    above: bool = False  # ...but for `low` here, which is excluded (a positive number)
    unit: str = ""  # "s", "ms", "req/s": said in messages, labels and the docs
    flag: str = ""  # the option; default --name-with-dashes
    aliases: tuple[str, ...] = ()  # other spellings of the flag
    off_flag: str = ""  # a switch's opposite (--close for --keepalive)
    directive: str = ""  # the server's own name for it (Apache's directive)
    label: str = ""  # a chooser's label; default the directive, else the name
    chooser: bool = False  # a field in the TUI's chooser
    per_model: bool = False  # a model may have its own default (see servers.models)
    none_means: str = ""  # what no value means ("closed loop"), when no value is allowed
    syntax: Callable[[str], object] | None = None  # a text setting's parser (ValueError)
    metavar: str | None = None
    choices: tuple[str, ...] = ()  # a text setting's only values (a policy's names)

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def named(self) -> str:
        """How a message names it: `--max-workers (MaxRequestWorkers)`."""
        return f"{self.option} ({self.directive})" if self.directive else self.option

    @property
    def placeholder(self) -> str:
        """argparse's metavar: N for a whole number, S for seconds..."""
        if self.metavar:
            return self.metavar
        if self.choices:
            return "|".join(self.choices)
        if self.kind is int:
            return "N"
        return METAVARS.get(self.unit, "X" if self.kind is float else "TEXT")

    @property
    def shown_label(self) -> str:
        if self.label:
            return self.label
        if self.directive:
            return self.directive
        words = self.name.removesuffix("_ms").replace("_", " ")
        return f"{words}, {self.unit}" if self.unit else words

    def parse(self, text: str) -> object:
        """A value from text as typed (argparse, a chooser's field); ValueError with the
        reason in a few words (the caller names the setting)."""
        if self.kind is str:  # its syntax or choices: `problem` (the config's checks) says
            return text
        if self.kind is int:
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"expected a whole number, got {text!r}") from None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            what = "a number of seconds" if self.unit == "s" else "a number"
            raise ValueError(f"expected {what}, got {text!r}")
        return value

    def problem(self, value: object, *, high: float | None = None) -> str | None:
        """What is wrong with `value`, in one line naming the setting (None: nothing).
        `high` narrows the range's top for one user (a model's scoreboard)."""
        if value is None or self.kind is bool:
            return None
        if self.choices:
            if value in self.choices:
                return None
            return f"{self.option} must be one of {', '.join(self.choices)}, got {value!r}"
        if self.syntax is not None:
            try:
                self.syntax(str(value))
            except ValueError as e:
                return f"{self.option}: {e}"
            return None
        if not isinstance(value, int | float):
            return f"{self.option}: expected a number, got {value!r}"
        top = self.high if high is None else high
        if self._inside(float(value), top):
            return None
        return f"{self.named} must be {self.range_text(top)}, got {figure(value)}"

    def _inside(self, value: float, top: float | None) -> bool:
        if math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return top is None or value <= top

    def range_text(self, top: float | None = None) -> str:
        """`between 1 and 1024`, `more than 0 seconds and at most 86400`; '' for none."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        top = self.high if top is None else top
        unit = UNIT_WORDS.get(self.unit, self.unit)
        unit = f" {unit}" if unit else ""
        if self.low is None:
            return "" if top is None else f"at most {figure(top)}{unit}"
        if self.above:
            end = f" and at most {figure(top)}" if top is not None else ""
            return f"more than {figure(self.low)}{unit}{end}"
        if top is None:
            return f"at least {figure(self.low)}{unit}"
        return f"between {figure(self.low)} and {figure(top)}{unit}"

    def show(self, value: object) -> str:
        """A value as a flag or a field takes it back."""
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, float):
            return f"{value:g}"  # as a flag takes it back: 0.25, 5
        return str(value)


def by_name(table: tuple[Setting, ...]) -> dict[str, Setting]:
    return {s.name: s for s in table}
