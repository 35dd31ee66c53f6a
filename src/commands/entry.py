"""The process's entry point: the command line is imported inside the guard, so that a
Ctrl-C while Python loads it (~0.5 s on a busy machine) ends in one line, not a traceback.
Nothing heavy here: this module is imported before anything else."""

from __future__ import annotations

from .ending import interrupted


def main() -> int:
    try:
        from .main import main as command_line
    except KeyboardInterrupt:
        return interrupted()
    return command_line()
