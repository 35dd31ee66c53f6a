"""many_accepts: the master makes the listening socket and forks asyncio workers that all
accept on it (Node's hand-made cluster). Which worker gets a connection is the kernel's
choice: epoll wakes every waiter and they race (or, with --exclusive, EPOLLEXCLUSIVE wakes
the most recent waiter, as nginx does), and asyncio's accept handler then takes up to
`backlog` connections in one go, so under a burst a few workers take most connections.

The master keeps its copy of the socket only to hand it to replacement workers."""

from __future__ import annotations

from .aio import serve_listener
from .arbiter import Arbiter
from .models import ModelSpec
from .root import RootContext

SPEC = ModelSpec(
    name="many_accepts",
    summary="asyncio workers all accepting on one shared socket; the kernel picks (skew)",
    origin="Node many_accepts.js",
    knobs=frozenset({"workers", "exclusive"}),
    defaults={"workers": 4, "max_keepalive_requests": 0},
)


def run(ctx: RootContext) -> int:
    def worker(slot: int) -> None:
        serve_listener(ctx, slot, ctx.listener, exclusive=ctx.config.exclusive)

    arbiter = Arbiter(ctx, worker)
    arbiter.start(ctx.config.workers or 4)
    return arbiter.run()
