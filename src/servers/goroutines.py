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
from dataclasses import dataclass
from functools import partial

from .acceptor import Acceptor
from .aio import AsyncWorker, HttpProtocol
from .http import Limits
from .loops import adopt, new_loop
from .models import ModelSpec
from .root import RootContext, gil_enabled
from .slots import Kind, State
from .slotwriter import SlotWriter


@dataclass(frozen=True)
class Knobs:
    workers: int = os.cpu_count() or 1  # GOMAXPROCS: one event loop per core
    max_keepalive_requests: int = 0  # Go's net/http has no cap


SPEC = ModelSpec.typed(
    Knobs,
    name="goroutines",
    summary="Go's shape: one process, an acceptor, an event-loop thread per core, balanced",
    origin="Go net/http server",
    said={"workers": "one per core"},
)


class Loop(AsyncWorker):
    """An event-loop thread; `finished` counts its closed connections (written by it only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, w: SlotWriter, limits: Limits) -> None:
        super().__init__(loop, w, limits)
        self.finished = 0

    def protocol(self, since_ns: int = 0, queue_us: int = -1) -> HttpProtocol:
        return Goroutine(self, since_ns, queue_us)


class Goroutine(HttpProtocol):
    __slots__ = ()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.worker.finished += 1  # type: ignore[attr-defined]


def run(ctx: RootContext) -> int:
    n = SPEC.knobs_of(ctx.config).workers
    board = ctx.scoreboard
    filled: list[Loop | None] = [None] * n  # each thread fills its own before `started`
    started = threading.Barrier(n + 1)

    def loop_main(k: int) -> None:
        w = board.claim(k, kind=Kind.THREAD, group=0)
        worker = Loop(new_loop(native=True), w, ctx.limits)
        filled[k] = worker
        w.state(State.WAITING)
        started.wait()
        worker.loop.run_forever()

    ctx.expect(n)
    for k in range(n):
        threading.Thread(target=loop_main, args=(k,), daemon=True, name=f"loop-{k}").start()
    started.wait()
    loops = [lp for lp in filled if lp is not None]
    assert len(loops) == n, "every loop thread passed the barrier with its loop"
    ctx.ready()
    if gil_enabled():
        gil = "with the GIL: all loops together use at most one core"
    else:
        gil = "free-threaded: the loops run in parallel"
    print(f"serverscope goroutines: {n} event-loop threads, {gil}", file=sys.stderr, flush=True)

    dispatched = [0] * n  # written by this (the acceptor) thread only
    acceptor = Acceptor(ctx.listener, "goroutines")
    while True:
        sock = acceptor.accept()
        if sock is None:
            continue
        k = min(range(n), key=lambda i: dispatched[i] - loops[i].finished)
        dispatched[k] += 1
        board.header.dispatches += 1
        target = loops[k]
        handed = partial(adopt, handed=True)
        target.loop.call_soon_threadsafe(
            handed, target.loop, sock, target.protocol, acceptor.since_ns, acceptor.queue_us
        )
