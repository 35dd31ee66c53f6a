"""Last-resort logging for the servers: one line per problem, and never a flood.

Why: under `ulimit -n 64` with 200 clients, many_accepts once wrote 71,988 tracebacks
(29 MB) to stderr in 8 s, and `run` and the TUI keep that stderr in a file. So an
unexpected exception in a connection is one line here (at most `PER_SECOND` lines a second
per process, then "N more suppressed"), and a failing accept() is counted and reported once
a second with its count (see `acceptor.py`).
"""

from __future__ import annotations

import sys
import threading
import time

PER_SECOND = 5

_lock = threading.Lock()
_window = 0.0
_lines = 0
_suppressed = 0


def _write(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr gone: nothing to say it with


def log(message: str) -> None:
    """One line on stderr, unless this process already wrote PER_SECOND this second."""
    global _window, _lines, _suppressed
    now = time.monotonic()
    with _lock:
        if now - _window >= 1.0:
            if _suppressed:
                _write(f"serverscope: {_suppressed} more messages suppressed")
            _window, _lines, _suppressed = now, 0, 0
        if _lines >= PER_SECOND:
            _suppressed += 1
            return
        _lines += 1
    _write(message.splitlines()[0] if message else message)


def unexpected(where: str, exc: BaseException) -> None:
    """An exception no code path expected: its type, message and line, on one line."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    at = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else ""
    text = str(exc).replace("\n", " ")[:200]
    log(f"serverscope {where}: unexpected {type(exc).__name__}{at}: {text}")


class EverySecond:
    """Counts a recurring failure and reports it at most once a second, with the count."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def hit(self, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            if now - self._last < 1.0:
                return
            n, self.count = self.count, 0
            self._last = now
        _write(f"serverscope {self.what}: {detail} ({n} since the last report)")
