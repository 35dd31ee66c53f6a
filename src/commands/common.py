"""What every subcommand shares: exit codes, the one-line parser error, argument types (one
seconds parser for every option in seconds), the model knobs and the load options (both
read from their tables), output-file checks."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from judging.stuck import STUCK_OPTIONS, StuckSettings
from lab.scenarios import FAULT_FORM, Fault, check_slot
from lab.server import KNOBS, ServerConfig, model_spec
from loadgen.levels import PRESETS, LoadLevel, preset
from loadgen.options import LOAD_OPTIONS
from plumbing.settings import UNIT_WORDS, Setting

EXIT_OK = 0
EXIT_FAILED = 1  # the server died, the load could not run, a write failed
EXIT_USAGE = 2  # a bad argument, or start-up failed (busy port, bad knob, model crashed)
EXIT_START = EXIT_USAGE

DAY_S = 24 * 3600.0


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (not the usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def fail(prog: str, message: str, code: int = EXIT_USAGE) -> int:
    """Say what is wrong in one line on stderr; the exit code to return."""
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def exit_status(ok: bool) -> int:
    return EXIT_OK if ok else EXIT_FAILED


# -- argument types -------------------------------------------------------------------------


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def tcp_port(text: str) -> int:
    """A port to find a server by: 1..65535 (0 is no server's port)."""
    n = whole_number(text)
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {n}")
    return n


def process_id(text: str) -> int:
    n = whole_number(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a process id (1 or more), got {n}")
    return n


def seconds(
    *, above: float | None = None, at_least: float | None = None, at_most: float | None = None
) -> Callable[[str], float]:
    """The parser of the options in seconds that are no knob or load option (those are
    their table's: `Setting.parse`, ranges in its rows): a finite number, optionally
    bounded. `seconds(above=0, at_most=DAY_S)` is `run --period`; `seconds(at_least=1,
    at_most=3600)` is `demo --seconds`; `seconds()` any finite number."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be more than {above:g} seconds, got {text}")
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"must be at least {at_least:g} seconds, got {text}")
        if at_most is not None and value > at_most:
            day = " (a day)" if at_most == DAY_S else ""
            raise argparse.ArgumentTypeError(
                f"must be at most {at_most:g} seconds{day}, got {text}"
            )
        return value

    return parse


# -- the model knobs and the load options ---------------------------------------------------


def _typed(setting: Setting) -> Callable[[str], Any]:
    """argparse's `type` for a setting: its parser, its reason in argparse's one line."""

    def parse(text: str) -> Any:
        try:
            return setting.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def setting_help(setting: Setting, default: str | None = None) -> str:
    """A setting's help: what it does, then its directive, range and default."""
    said = [setting.directive] if setting.directive else []
    if setting.range_text():
        said.append(setting.range_text())
    elif setting.unit:
        said.append(UNIT_WORDS.get(setting.unit, setting.unit))
    if default is None:
        if setting.default is not None and setting.kind is not bool:
            default = f"default {setting.show(setting.default)}"
            if setting.per_model:
                default += " unless the model has its own"
        elif setting.none_means:
            default = f"default: {setting.none_means}"
        elif setting.per_model:
            default = "default: the model's"
    if default:
        said.append(default)
    extra = f" ({'; '.join(said)})" if said else ""
    return f"{setting.help}{extra}".replace("%", "%%")


def add_settings(
    g: Any, settings: tuple[Setting, ...], default: Callable[[Setting], str | None] | None = None
) -> None:
    """One option per setting, its dest the setting's field; every default None (not
    given: the config's, the preset's), so what the user gave is what is not None.
    `default`: how a setting's default is said, where the table's is not the whole story."""
    for s in settings:
        flags = [s.option, *s.aliases]
        if s.kind is bool and s.off_flag:
            pair = g.add_mutually_exclusive_group()
            pair.add_argument(*flags, dest=s.name, action="store_true", default=None, help=s.help)
            pair.add_argument(
                s.off_flag, dest=s.name, action="store_false", help=f"the opposite of {s.option}"
            )
        elif s.kind is bool:
            g.add_argument(*flags, dest=s.name, action="store_true", default=None, help=s.help)
        else:
            g.add_argument(
                *flags,
                dest=s.name,
                type=_typed(s),
                metavar=s.placeholder,
                help=setting_help(s, default(s) if default else None),
            )


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model knobs (`lab.server.KNOBS`), shared by `serve`, the TUI, `run`, `compare`
    and `web`."""
    g = p.add_argument_group("model knobs (a model refuses the ones it does not have)")
    add_settings(g, KNOBS)


def config_from_args(model: str, a: argparse.Namespace) -> ServerConfig:
    """The config `add_model_args` describes: a knob given is set, the others keep the
    config's defaults (serve's --no-phases too)."""
    given = vars(a)
    names = [k.name for k in KNOBS] + ["phases"]
    knobs = {n: given[n] for n in names if given.get(n) is not None}
    return ServerConfig(model=model, **knobs)


def add_load_args(
    p: argparse.ArgumentParser,
    *,
    default: str | None,
    title: str,
    more: tuple[str, ...] = (),
) -> None:
    """A load preset and the options that override its fields: the same for `load`,
    `run`, `compare` and the live lab. `default`: the preset when none is given (None:
    LoadLevel's defaults); `more`: choices beyond the presets (the lab's `none`)."""
    g = p.add_argument_group(title)
    default_text = f"default {default}" if default else "default: none, the options below"
    g.add_argument(
        "--load",
        "--preset",
        dest="preset",
        metavar="PRESET",
        choices=[*PRESETS, *more],
        help=f"a named load level: {', '.join([*PRESETS, *more])} ({default_text}; "
        "`serverscope load --list-presets` says what each one shows)",
    )
    add_settings(g, LOAD_OPTIONS, _preset_default if default else _level_default)


def _preset_default(option: Setting) -> str:
    return "default: the preset's"


def _level_default(option: Setting) -> str:
    if option.default is not None:
        return f"default {option.show(option.default)}, or the preset's"
    return f"default: {option.none_means}, or the preset's"


def load_overrides(a: argparse.Namespace) -> dict[str, Any]:
    """The load options given on the command line, by LoadLevel field."""
    return {
        o.name: getattr(a, o.name) for o in LOAD_OPTIONS if getattr(a, o.name, None) is not None
    }


def level_from_args(a: argparse.Namespace, default: str | None) -> LoadLevel:
    """The preset given (else `default`, else LoadLevel's defaults) with the options given
    over it; LoadError (one line naming the option) when out of range."""
    name = a.preset or default
    base = preset(name) if name else LoadLevel()
    return base.override(**load_overrides(a)).check()


# -- output ---------------------------------------------------------------------------------


def check_output(option: str, path: str | None) -> None:
    """Refuse an output file that cannot be written, before anything runs (OSError, one line
    naming the option and the problem). Nothing is created: the run may still fail."""
    if not path:
        return
    target = Path(path)
    where = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OSError(f"cannot write {option} {path}: it is a directory")
    if not where.is_dir():
        what = "not a directory" if where.exists() else "no such directory"
        raise OSError(f"cannot write {option} {path}: {what}: {where}")
    if target.exists() and not os.access(target, os.W_OK):
        raise OSError(f"cannot write {option} {path}: permission denied")
    if not target.exists() and not os.access(where, os.W_OK | os.X_OK):
        raise OSError(f"cannot write {option} {path}: permission denied in {where}")


def console_for_output(width: int = 140) -> Console:
    """A console that keeps each table row on one line when the output is a file or pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=width)


MIN_WIDTH, MAX_WIDTH = 40, 1000


def add_width_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--width",
        type=columns,
        help="columns of the text output (default: the terminal's; piped or in a file: as "
        "wide as its tables need)",
    )


def columns(text: str) -> int:
    n = whole_number(text)
    if not MIN_WIDTH <= n <= MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"must be {MIN_WIDTH} to {MAX_WIDTH} columns, got {n}")
    return n


def fit_console(console: Console, width: int | None, wanted: Callable[[], int]) -> Console:
    """Set `console`'s width: `--width`, else a terminal's own, else (a pipe or a file,
    where rich takes 80 and squeezes every column of a wider table) `wanted()`."""
    if width:
        console.width = width
    elif not console.is_terminal:
        console.width = min(MAX_WIDTH, wanted())
    return console


# -- the automatic stack captures of stuck workers ------------------------------------------


def add_stuck_args(p: Any) -> None:
    """--stuck-after and --capture-budget (judging.stuck's table): the lab, `run`, `attach`."""
    g = p.add_argument_group("stuck workers (their stacks taken by themselves, once each)")
    for s in STUCK_OPTIONS:  # no config checks these later: each is checked as it is parsed

        def parse(text: str, s: Setting = s) -> Any:
            value = _typed(s)(text)
            if (why := s.problem(value)) is not None:
                raise argparse.ArgumentTypeError(why.removeprefix(f"{s.option} "))
            return value

        g.add_argument(
            s.option, dest=s.name, type=parse, metavar=s.placeholder, help=setting_help(s)
        )


def stuck_from_args(a: argparse.Namespace) -> StuckSettings:
    given = {
        s.name: getattr(a, s.name) for s in STUCK_OPTIONS if getattr(a, s.name, None) is not None
    }
    return StuckSettings(**given)


def add_fault_arg(p: argparse.ArgumentParser, runs: str) -> None:
    """--fault (lab.scenarios.Fault): done to a worker of `runs` at its second."""
    p.add_argument(
        "--fault",
        metavar=FAULT_FORM,
        help=f"do this to a worker {runs}, SECONDS into the load (default 2): pause "
        "(SIGSTOP; +FOR: SIGCONT after FOR seconds), kill (SIGKILL) or burn (CPU for 3 s); "
        "SLOT a worker's slot (0) or master. pause:0@3 stalls worker 0 as `demo hol` does; "
        "pause:0@2+3 stalls it for 3 s",
    )


def fault_from_args(
    a: argparse.Namespace, level: LoadLevel, cfg: ServerConfig | None = None
) -> Fault | None:
    """The --fault given, checked against the load's length and, when one setup is run,
    the worker slots of `cfg` (ValueError: one line; `cfg` is resolved only then)."""
    fault = Fault.parse(a.fault) if a.fault else None
    if fault is not None and fault.after_s >= level.duration:
        raise ValueError(f"--fault at {fault.after_s:g} s: the load lasts {level.duration:g} s")
    if fault is not None and cfg is not None:
        check_slot(fault, model_spec(cfg.model).resolve(cfg))
    return fault
