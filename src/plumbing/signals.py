"""Stop-signal handlers, installed one way everywhere: SIGINT/SIGTERM set an Event.

A command that runs until told to stop (serve, run, load, demo, attach) wraps its loop in
`with stop_on(stop):`; the previous handlers come back when it leaves, even on an exception.
Only the main thread may install handlers: elsewhere (a test calling a command from a thread)
this installs nothing and the caller's Event is the only way to stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on(
    stop: threading.Event, signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> Iterator[threading.Event]:
    old: dict[signal.Signals, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
