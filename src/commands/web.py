"""`serverscope web [the TUI's options]`: the live lab in a browser, for talks and for hosts
without a good terminal.

textual-serve does the work: a small aiohttp server on 127.0.0.1 whose page runs xterm.js,
and for every page that connects it starts the command we give it (here: this same
serverscope with the same TUI options) under Textual's web driver. So each browser page
gets its own lab (its own model, load and sampler), and when the page closes textual-serve
tells that app to quit, which stops its Session: servers and load generators go with it
(and, were the app killed, the parent-death signal the Session arms takes them anyway).
Each lab is started through commands.web_lab (`python -m commands.web_lab SERVER_PID ARGS`),
which asks the kernel to kill the lab if the web server dies (PR_SET_PDEATHSIG): a web server
killed with SIGKILL would otherwise leave its labs running, as a closed stdin does not end a
Textual app under the web driver (seen).

The web server (commands/web_server.py) opens a lab only for a websocket from its own page
(Origin http://127.0.0.1:PORT or http://localhost:PORT), at most --max-labs at once, and
on SIGINT/SIGTERM stops every lab and exits within a second.

Not offered here: --record and --export, which every page's lab would share (one file, one
port); use them with the TUI in a terminal. The model's --port likewise clashes when two
pages are open: leave it at its default (a free port per lab).
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from typing import Any

from . import tui
from .common import EXIT_FAILED, EXIT_OK, add_model_args, fail

DEFAULT_WEB_PORT = 8000
DEFAULT_MAX_LABS = 4  # each lab ~110 MiB PSS and a server's processes
MAX_LABS = 64
WEB_ONLY = frozenset({"web_port", "max_labs", "command", "help", "web_parser"})
NOT_PER_PAGE = ("record", "export", "export_any_host")
PROG = "serverscope web"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "web",
        help="serve the live lab to a browser (one lab per page)",
        description="Serve the live lab on http://127.0.0.1:WEB_PORT/ with textual-serve: "
        "each browser page opens its own lab with these options, stopped when the page closes.",
    )
    tui.add_args(p)
    add_model_args(p)
    p.add_argument(
        "--web-port",
        type=int,
        default=DEFAULT_WEB_PORT,
        help=f"port of the page, on 127.0.0.1 (default {DEFAULT_WEB_PORT}; "
        "--port is the model's own)",
    )
    p.add_argument(
        "--max-labs",
        type=int,
        default=DEFAULT_MAX_LABS,
        help=f"labs (pages) open at once, each with its own server and load (default "
        f"{DEFAULT_MAX_LABS}); the next page is told to close one",
    )
    p.set_defaults(web_parser=p)
    return p


def lab_argv(a: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The `serverscope [options]` argv that opens the same lab in a terminal: every
    option given a non-default value, in the parser's own spelling."""
    argv: list[str] = []
    for action in parser._actions:
        dest = action.dest
        if dest in WEB_ONLY or not action.option_strings:
            continue
        value = getattr(a, dest, None)
        if value is None or value == action.default:
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        flag = (longs or action.option_strings)[0]  # its first long spelling
        if isinstance(action, argparse._StoreConstAction):  # a switch (--close, --exclusive)
            if value == action.const:  # given: the dest holds what this switch stores
                argv.append(flag)
        else:
            argv += [flag, str(value)]
    return argv


def lab_command(a: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The shell command textual-serve runs for each page (`exec`: no shell left between)."""
    argv = ["exec", sys.executable, "-m", "commands.web_lab", str(os.getpid())]
    return shlex.join([*argv, *lab_argv(a, parser)])


def command(a: argparse.Namespace) -> int:
    from lab.server import ConfigError
    from loadgen.levels import LoadError

    given = [f"--{d.replace('_', '-')}" for d in NOT_PER_PAGE if getattr(a, d, None)]
    if given:
        return fail(
            PROG,
            f"{' '.join(given)} would be shared by every page's lab; "
            "use it with the TUI in a terminal",
        )
    if not 0 < a.web_port < 65536:
        return fail(PROG, f"--web-port {a.web_port} is not 1..65535")
    if not 1 <= a.max_labs <= MAX_LABS:
        return fail(PROG, f"--max-labs {a.max_labs} is not 1..{MAX_LABS}")
    try:  # bad options fail here, in one line, not in every page
        tui.check_config(tui.default_config(a))  # the lab each page opens, defaults included
        tui.level_from_args(a)
    except (ConfigError, LoadError) as e:
        return fail(PROG, str(e))
    from .web_server import LabServer  # late: aiohttp and textual-serve load only here

    cmd = lab_command(a, a.web_parser)
    server = LabServer(cmd, host="127.0.0.1", port=a.web_port, max_labs=a.max_labs)
    try:
        # before serve(), which prints "Serving ... on http://..." before it binds
        _bindable(a.web_port)
        server.serve()
    except OSError as e:
        why = f"cannot serve on 127.0.0.1:{a.web_port}: {e.strerror or e} (pick another --web-port)"
        return fail(PROG, why, EXIT_FAILED)
    return EXIT_OK


def _bindable(port: int) -> None:
    """OSError when 127.0.0.1:`port` cannot be listened on (bound as aiohttp binds it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
