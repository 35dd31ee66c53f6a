"""proc_spawn: a fixed pool of processes, each blocked in accept() on one shared socket
and serving one connection at a time. The kernel wakes blocked acceptors in FIFO order,
so accepts spread evenly; but N clients holding connections occupy all N workers."""

from __future__ import annotations

from dataclasses import dataclass

from . import knobs
from .arbiter import Arbiter
from .blocking import accept_loop
from .models import ModelSpec
from .root import RootContext


@dataclass(frozen=True)
class Knobs:
    workers: int = 250  # the C original's pool
    request_read_timeout: str = knobs.default("request_read_timeout")  # Apache's


SPEC = ModelSpec.typed(
    Knobs,
    name="proc_spawn",
    summary=f"fixed pool of processes (default {Knobs.workers}), each blocking in accept() "
    "on one socket",
    origin="C proc_spawn",
)


def run(ctx: RootContext) -> int:
    def worker(slot: int) -> None:
        accept_loop(ctx.listener, ctx.scoreboard.claim(slot), ctx.limits)

    arbiter = Arbiter(ctx, worker)
    arbiter.start(SPEC.knobs_of(ctx.config).workers)
    return arbiter.run()
