"""What every subcommand shares: exit codes, the one-line parser error, argument types (one
seconds parser for every option in seconds), the model knobs, output-file checks."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from rich.console import Console

from servers.config import ServerConfig

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


def number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A number of type `kind` (int, float); range checks are left to whoever uses it."""

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None

    return parse


def seconds(
    *, above: float | None = None, at_least: float | None = None, at_most: float | None = None
) -> Callable[[str], float]:
    """The one parser of seconds: a finite number, optionally bounded.

    `seconds(above=0, at_most=DAY_S)` is `run --duration` (every run ends by itself);
    `seconds(at_least=1, at_most=3600)` is `demo --seconds`; `seconds()` any finite number
    (the model's timeouts, which ServerConfig checks itself)."""

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


# -- the model knobs ------------------------------------------------------------------------


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model knobs, shared by `serve`, the TUI, `run`, `compare` and `web`."""
    g = p.add_argument_group("model knobs (a model refuses the ones it does not have)")
    g.add_argument(
        "--workers", type=whole_number, help="worker processes (event loops for goroutines)"
    )
    g.add_argument(
        "--backlog",
        type=whole_number,
        default=511,
        help="listen() backlog, Apache's ListenBacklog (511)",
    )
    g.add_argument("--port", type=whole_number, default=0, help="port (default: a free one)")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    g.add_argument(
        "--exclusive", action="store_true", help="many_accepts: EPOLLEXCLUSIVE, as nginx"
    )
    g.add_argument(
        "--keepalive-timeout", type=seconds(), default=5.0, help="KeepAliveTimeout, seconds (5)"
    )
    g.add_argument(
        "--max-keepalive-requests",
        type=whole_number,
        help="MaxKeepAliveRequests (0 = unlimited; default: Apache's 100 for the C and "
        "Apache models, nginx's 1000 for reuseport, unlimited for the Node and Go shapes)",
    )
    g.add_argument(
        "--timeout",
        type=seconds(),
        default=60.0,
        help="Timeout: seconds for a request to arrive whole (60)",
    )
    g.add_argument(
        "--max-cpu-ms",
        type=number(float),
        default=10_000.0,
        help="per-request CPU ceiling of /work?cpu_ms=, ms; more is answered 400 (10000)",
    )
    g.add_argument("--start-servers", type=whole_number, help="StartServers")
    g.add_argument("--min-spare", type=whole_number, help="MinSpareServers / MinSpareThreads")
    g.add_argument("--max-spare", type=whole_number, help="MaxSpareServers / MaxSpareThreads")
    g.add_argument("--max-workers", type=whole_number, help="MaxRequestWorkers")
    g.add_argument("--threads-per-child", type=whole_number, help="ThreadsPerChild")
    g.add_argument("--async-factor", type=number(float), help="AsyncRequestWorkerFactor")
    g.add_argument(
        "--request-read-timeout",
        metavar="RULES",
        help="RequestReadTimeout (mod_reqtimeout) of the C and Apache models, in Apache's "
        "syntax; default Apache's 'header=20-40,MinRate=500 body=20,MinRate=500'; "
        "'header=0 body=0' turns it off",
    )


def config_from_args(model: str, a: argparse.Namespace) -> ServerConfig:
    """The config `add_model_args` describes: its flags' dests are ServerConfig's fields
    (a field with no flag keeps its default)."""
    given = vars(a)
    knobs = {f.name: given[f.name] for f in fields(ServerConfig) if f.name in given}
    knobs.pop("model", None)
    return ServerConfig(model=model, **knobs)


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
