"""single: one process, one thread; blocking accept(), serve that connection to its end,
then the next. Concurrency 1: while it serves one client, the rest wait in the accept
queue, and once the queue is full their SYNs are dropped (connect times of 1 s, 3 s)."""

from __future__ import annotations

from dataclasses import dataclass

from . import knobs
from .blocking import accept_loop
from .models import ModelSpec
from .root import RootContext


@dataclass(frozen=True)
class Knobs:
    request_read_timeout: str = knobs.default("request_read_timeout")  # Apache's


SPEC = ModelSpec.typed(
    Knobs,
    name="single",
    summary="one process, one thread: accept, serve to the end, accept the next (concurrency 1)",
    origin="C single",
)


def run(ctx: RootContext) -> int:
    ctx.expect(1)
    w = ctx.scoreboard.claim(0)
    ctx.ready()
    accept_loop(ctx.listener, w, ctx.limits)
    return 0
