"""How a command says it was interrupted: imported by the entry point before anything
heavy, and by the command line (commands.main)."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command Ctrl-C ended


def interrupted() -> int:
    """Say it in one line (stderr); the exit code."""
    try:
        print("serverscope: interrupted", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    return EXIT_INTERRUPTED
