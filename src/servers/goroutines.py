"""goroutines: the Go server's shape. One process: an acceptor thread blocking in accept(),
and one asyncio event-loop thread per core (--workers sets how many), each connection a
coroutine-like protocol on one loop. The runtime, not the kernel, balances: the acceptor
gives each new connection to the loop with the fewest open connections.

On a CPython with the GIL the loops take turns holding it, so the CPU of all its threads
together stays under one core however many loops there are: that is the expected result
here, shown (the scoreboard's model area carries `gil`, and the root says so at start),
not hidden. A free-threaded build (`sys._is_gil_enabled()` false) runs them in parallel.

Scoreboard: loop k takes slot k (kind thread, group 0); the acceptor thread has no slot;
`dispatches` counts hand-offs from the acceptor to a loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

from . import guard
from .aio import AsyncWorker, HttpProtocol, adopt, new_loop
from .http import Limits
from .models import ModelSpec
from .root import RootContext
from .scoreboard import KIND_THREAD, SlotWriter, State

SPEC = ModelSpec(
    name="goroutines",
    summary="Go's shape: one process, an acceptor, an event-loop thread per core, balanced",
    origin="Go net/http server",
    knobs=frozenset({"workers"}),
    defaults={"workers": os.cpu_count() or 1, "max_keepalive_requests": 0},
)


class Loop(AsyncWorker):
    """An event-loop thread; `finished` counts its closed connections (written by it only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, w: SlotWriter, limits: Limits) -> None:
        super().__init__(loop, w, limits)
        self.finished = 0

    def protocol(self) -> HttpProtocol:
        return Goroutine(self)


class Goroutine(HttpProtocol):
    __slots__ = ()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.worker.finished += 1  # type: ignore[attr-defined]


def gil_enabled() -> bool:
    return getattr(sys, "_is_gil_enabled", lambda: True)()


def run(ctx: RootContext) -> int:
    n = ctx.config.workers or os.cpu_count() or 1
    board = ctx.scoreboard
    loops: list[Loop] = [None] * n  # type: ignore[list-item]  (each thread fills its own)
    started = threading.Barrier(n + 1)

    def loop_main(k: int) -> None:
        w = board.claim(k, kind=KIND_THREAD, group=0)
        worker = Loop(new_loop(), w, ctx.limits)
        loops[k] = worker
        w.state(State.WAITING)
        started.wait()
        worker.loop.run_forever()

    ctx.expect(n)
    for k in range(n):
        threading.Thread(target=loop_main, args=(k,), daemon=True, name=f"loop-{k}").start()
    started.wait()
    ctx.ready()
    if gil_enabled():
        gil = "with the GIL: all loops together use at most one core"
    else:
        gil = "free-threaded: the loops run in parallel"
    print(f"serverscope goroutines: {n} event-loop threads, {gil}", file=sys.stderr, flush=True)

    dispatched = [0] * n  # written by this (the acceptor) thread only
    listener = ctx.listener
    failed = guard.EverySecond("goroutines")
    while True:
        try:
            sock, _ = listener.accept()
        except OSError as e:  # EMFILE and the like: say so (once a second), back off
            if not isinstance(e, InterruptedError):
                failed.hit(f"accept failed: {e}")
                time.sleep(guard.ACCEPT_BACKOFF)
            continue
        k = min(range(n), key=lambda i: dispatched[i] - loops[i].finished)
        dispatched[k] += 1
        board.header.dispatches += 1
        target = loops[k]
        target.loop.call_soon_threadsafe(adopt, target.loop, sock, target.protocol)
