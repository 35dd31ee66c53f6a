"""The `serverscope` command line: one argparse tree, each subcommand its own module.

How every command ends when the user or the shell ends it early, decided here once:
- the reader of its output goes away (`serverscope ... | head -1`): quiet, exit 141, the
  status a shell reports for a Unix filter killed by SIGPIPE (`yes | head -1`), so that
  `set -o pipefail` treats serverscope as it treats cat or grep. Python's own recipe
  (the signal module's "Note on SIGPIPE", and rich) exits 1 and json.tool exits 32 (the
  errno): both read as an ordinary failure. Dying of SIGPIPE itself would skip the
  commands' `finally:` blocks, which stop the children serverscope started;
- Ctrl-C before a command takes SIGINT over (start-up: the imports, reading the tree,
  starting bpftrace): one line, exit 130 (128 + SIGINT, as shells report it); what was
  started is stopped by the commands' own `finally:`/`except BaseException:` on the way.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
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
from .ending import interrupted

EXIT_READER_GONE = 128 + signal.SIGPIPE  # 141: see the module's doc

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
    a: argparse.Namespace | None = None
    try:
        parser = build_parser()
        a = parser.parse_args(argv)
        command = COMMANDS.get(a.command)
        if command is None:
            parser.error(f"unknown command {a.command!r}")
            return EXIT_USAGE
        try:
            code = command(a)
        except (ConfigError, ServerError) as e:
            code = fail("serverscope", str(e))
        sys.stdout.flush()  # a gone reader is seen here, not in the interpreter's teardown
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise  # a socket's, not the output's: a defect to see
        code = reader_gone()
    except SystemExit as e:  # rich's console exits 1 when its output's reader is gone
        if not isinstance(e.__context__, BrokenPipeError):
            raise
        code = reader_gone()
    except KeyboardInterrupt:
        code = interrupted()
    if argv is None and a is not None and a.command in TUI_COMMANDS:
        leave_now(code)  # this process's own command line, not a caller's test
    return code


def stdout_reader_gone() -> bool:
    """Nobody reads our standard output any more: a pipe whose reader closed polls POLLERR."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(ev & select.POLLERR for _, ev in poller.poll(0))


def reader_gone() -> int:
    """Quiet: what is still buffered goes to /dev/null (else the interpreter's last flush
    prints a BrokenPipeError); the exit code, as a filter killed by SIGPIPE reports it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_READER_GONE


def leave_now(code: int) -> NoReturn:
    """Exit at once with `code`, the standard streams flushed; no interpreter teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
