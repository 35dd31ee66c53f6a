"""The model's root process: `python -m servers.root CONFIG_JSON`.

Started by the supervisor with the scoreboard memfd and the listening sockets already
open (their fd numbers come in the environment), already set to die with the supervisor
(plumbing.child). It maps the scoreboard and runs the model, which may fork workers from
here (the master).
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
from dataclasses import dataclass

from plumbing.process import raise_nofile_limit

from . import acceptor, app, models
from .config import ServerConfig
from .http import Limits
from .scoreboard import Scoreboard

ENV_SCOREBOARD = "SERVERSCOPE_SCOREBOARD_FD"
ENV_LISTENERS = "SERVERSCOPE_LISTEN_FDS"
BURN_SIGNAL = signal.SIGUSR1  # a fault the TUI injects: the receiving process burns CPU
BURN_MS = 3000.0


@dataclass
class RootContext:
    """What a model's `run` gets: its config, the scoreboard, the listening sockets."""

    config: ServerConfig
    scoreboard: Scoreboard
    listeners: list[socket.socket]

    @property
    def listener(self) -> socket.socket:
        return self.listeners[0]

    @functools.cached_property
    def limits(self) -> Limits:
        return self.config.limits  # once: workers ask per connection, and it parses a knob

    def expect(self, nslots: int) -> None:
        """Tell the supervisor how many initial worker slots must leave STARTING."""
        self.scoreboard.header.expected = nslots

    def ready(self) -> None:
        self.scoreboard.header.ready = 1


def gil_enabled() -> bool:
    """False only on a free-threaded CPython with the GIL off (`sys._is_gil_enabled`)."""
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    # inherited by every forked worker; runs in the process's main thread, so it stalls
    # that worker's accept loop or event loop as a CPU-heavy request would
    signal.signal(BURN_SIGNAL, lambda *_: app.burn_cpu(BURN_MS))
    raise_nofile_limit()
    config = ServerConfig.from_json(sys.argv[1])
    app.set_max_cpu_ms(config.max_cpu_ms)
    board = Scoreboard(int(os.environ[ENV_SCOREBOARD]))
    fds = [int(x) for x in os.environ[ENV_LISTENERS].split(",") if x]
    listeners = [socket.socket(fileno=fd) for fd in fds]
    for sock in listeners:
        sock.setblocking(True)
    board.set_model(config.model, os.getpid())
    board.header.gil = 1 if gil_enabled() else 0
    if config.phases:  # before any worker claims its slot (claim reads it)
        board.header.phases = 1
        for sock in listeners:
            acceptor.stamp_arrivals(sock)
    try:
        module = models.load(config.model)
        return int(module.run(RootContext(config, board, listeners)) or 0)
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # the supervisor shows this line as why the model exited
        board.set_error(f"{type(e).__name__}: {e}".splitlines()[0])
        raise


if __name__ == "__main__":
    sys.exit(main())
