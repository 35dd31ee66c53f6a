"""The `serverscope` command line: one argparse tree, each subcommand its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from lab.server import ConfigError, ServerError

from . import (
    attach,
    claims,
    compare,
    demo,
    diff,
    fix,
    fleet,
    load,
    replay,
    run,
    seed,
    serve,
    stack,
    tui,
    web,
)
from .common import EXIT_USAGE, Parser, add_model_args, fail

# subcommand -> what runs it (None: no subcommand, the live lab)
COMMANDS: dict[str | None, Callable[[argparse.Namespace], int]] = {
    None: tui.run,
    "serve": serve.run,
    "load": load.run,
    "attach": attach.run,
    "replay": replay.run,
    "run": run.command,
    "compare": compare.command,
    "demo": demo.command,
    "web": web.command,
    "seed": seed.command,
    "fleet": fleet.run,
    "stack": stack.run,
    "diff": diff.command,
    "fix": fix.command,
    "claims": claims.command,
}
# The commands that open the TUI (web: one per browser page). When one returns, it has
# stopped everything it started and given the terminal back; run from the command line, the
# process then leaves with os._exit: the interpreter's own teardown would take most of the
# 0.5 s a quit may take (bench/README.md, bench_quit.py).
TUI_COMMANDS = frozenset({None, "replay", "attach", "demo", "web", "fleet"})


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="serverscope", description="A live terminal lab for server concurrency models.")
    tui.add_args(p)
    add_model_args(p)
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    serve.add_parser(sub)
    load.add_parser(sub)
    attach.add_parser(sub)
    replay.add_parser(sub)
    run.add_parser(sub)
    compare.add_parser(sub)
    demo.add_parser(sub)
    web.add_parser(sub)
    seed.add_parser(sub)
    fleet.add_parser(sub)
    stack.add_parser(sub)
    diff.add_parser(sub)
    fix.add_parser(sub)
    claims.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    command = COMMANDS.get(a.command)
    if command is None:
        parser.error(f"unknown command {a.command!r}")
        return EXIT_USAGE
    try:
        code = command(a)
    except (ConfigError, ServerError) as e:
        return fail("serverscope", str(e))
    if argv is None and a.command in TUI_COMMANDS:
        leave_now(code)  # this process's own command line, not a caller's test
    return code


def leave_now(code: int) -> NoReturn:
    """Exit at once with `code`, the standard streams flushed; no interpreter teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
