"""One browser page's lab (`python -m commands.web_lab SERVER_PID ARGS`, which textual-serve
runs for each page of `serverscope web`): it asks the kernel to kill it if the web server
dies (PR_SET_PDEATHSIG), then runs the TUI as `serverscope ARGS` would. A module of its
own so that commands.web, which commands.main imports, does not import main back."""

from __future__ import annotations

import sys

from plumbing.process import die_with_parent

from .main import main


def lab_main(argv: list[str]) -> int:
    """One page's lab: die with the web server (pid argv[0]), then the TUI as usual."""
    die_with_parent(expected_parent=int(argv[0]))
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(lab_main(sys.argv[1:]))
