"""The one accept() of every model: a new connection, or None, and after a failure a
report once a second and a back-off.

Issue 11: under `ulimit -n 64` with 200 clients an accept() that fails with EMFILE fails
again at once for as long as the fd table is full; retried in a loop it burned a core
and wrote 71,988 tracebacks (29 MB) in 8 s. So a failing accept() (EMFILE, ENFILE,
ENOBUFS, ...) is counted and said once a second (`guard.EverySecond`), and the caller's
`pause` keeps it from accepting for ACCEPT_BACKOFF: a sleep for a thread that blocks in
accept(), removing the listener from the loop for a while for an event loop. The
connection stays in the accept queue meanwhile, where the kernel counts it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from . import guard

ACCEPT_BACKOFF = 0.1  # seconds without accept() after EMFILE/ENFILE and the like

# nothing to accept now (a non-blocking listener), a signal, or a client that reset
# before we took its connection: none of them is a failure, try again
_NOTHING = (BlockingIOError, InterruptedError, ConnectionAbortedError)


class Acceptor:
    """accept() on `listener` for `who` (the name in its failure reports)."""

    def __init__(
        self,
        listener: socket.socket,
        who: str,
        *,
        pause: Callable[[float], object] = time.sleep,
    ) -> None:
        self.listener = listener
        self.pause = pause
        self._failed = guard.EverySecond(who)

    def accept(self) -> socket.socket | None:
        """A new connection; None if there is none now or accept() failed (said, paused)."""
        try:
            return self.listener.accept()[0]
        except _NOTHING:
            return None
        except OSError as e:
            self._failed.hit(f"accept failed: {e}")
            self.pause(ACCEPT_BACKOFF)
            return None
