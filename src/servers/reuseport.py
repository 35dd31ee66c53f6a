"""reuseport: one SO_REUSEPORT listening socket, with its own accept queue, per asyncio
worker (nginx's `reuseport`). The kernel spreads new connections by a hash of the
4-tuple: counts come out even, but the hash ignores load, so a stalled worker's own
queue keeps growing while the others idle.

The sockets are opened by the supervisor (so each queue can be read with TCP_INFO); the
master keeps them and gives socket i to whichever worker runs in slot i."""

from __future__ import annotations

from dataclasses import dataclass

from .arbiter import Arbiter
from .loops import serve_listener
from .models import ModelSpec
from .root import RootContext


@dataclass(frozen=True)
class Knobs:
    workers: int = 4
    max_keepalive_requests: int = 1000  # nginx keepalive_requests


SPEC = ModelSpec.typed(
    Knobs,
    name="reuseport",
    summary="one SO_REUSEPORT socket and accept queue per asyncio worker; kernel hashes",
    origin="nginx reuseport; Cloudflare's comparison",
    listeners=lambda knobs: knobs.workers,
)


def run(ctx: RootContext) -> int:
    def worker(slot: int) -> None:
        for i, other in enumerate(ctx.listeners):
            if i != slot:
                other.close()  # a worker holds its own socket only
        serve_listener(ctx, slot, ctx.listeners[slot], listener_index=slot)

    arbiter = Arbiter(ctx, worker)
    arbiter.start(len(ctx.listeners))
    return arbiter.run()
