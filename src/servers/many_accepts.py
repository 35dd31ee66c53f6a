"""many_accepts: the master makes the listening socket and forks asyncio workers that all
accept on it (Node's hand-made cluster). Which worker gets a connection is the kernel's
choice: epoll wakes every waiter and they race (or, with --exclusive, EPOLLEXCLUSIVE wakes
the most recent waiter, as nginx does), and asyncio's accept handler then takes up to
`backlog` connections in one go, so under a burst a few workers take most connections.
--accept-policy changes how many a wake-up takes, and when (servers.accept_policy).

The master keeps its copy of the socket only to hand it to replacement workers."""

from __future__ import annotations

from dataclasses import dataclass

from . import knobs as table
from .arbiter import Arbiter
from .loops import serve_listener
from .models import ModelSpec
from .root import RootContext


@dataclass(frozen=True)
class Knobs:
    workers: int = 4
    exclusive: bool = False  # EPOLLEXCLUSIVE, as nginx
    accept_policy: str = table.default("accept_policy")  # servers.accept_policy
    max_keepalive_requests: int = 0  # unlimited, as Node


SPEC = ModelSpec.typed(
    Knobs,
    name="many_accepts",
    summary="asyncio workers all accepting on one shared socket; the kernel picks (skew)",
    origin="Node many_accepts.js",
)


def run(ctx: RootContext) -> int:
    knobs = SPEC.knobs_of(ctx.config)

    def worker(slot: int) -> None:
        # rotate re-arms an EPOLLEXCLUSIVE registration: it is nginx's answer to LIFO
        exclusive = knobs.exclusive or knobs.accept_policy == "rotate"
        serve_listener(ctx, slot, ctx.listener, exclusive=exclusive, policy=knobs.accept_policy)

    arbiter = Arbiter(ctx, worker)
    arbiter.start(knobs.workers)
    return arbiter.run()
