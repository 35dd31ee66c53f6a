"""reuseport: one SO_REUSEPORT listening socket, with its own accept queue, per asyncio
worker (nginx's `reuseport`). The kernel spreads new connections by a hash of the
4-tuple: counts come out even, but the hash ignores load, so a stalled worker's own
queue keeps growing while the others idle. --steer replaces the hash with a program on
the group (by the receiving CPU, or round robin), --incoming-cpu has socket i prefer
CPU i's connections (servers.steering).

The sockets are opened by the supervisor (so each queue can be read with TCP_INFO); the
master keeps them and gives socket i to whichever worker runs in slot i."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import knobs as table
from . import steering
from .arbiter import Arbiter
from .loops import serve_listener
from .models import ModelSpec
from .root import RootContext


@dataclass(frozen=True)
class Knobs:
    workers: int = 4
    max_keepalive_requests: int = 1000  # nginx keepalive_requests
    steer: str = table.default("steer")
    incoming_cpu: bool = table.default("incoming_cpu")


def _check(knobs: Knobs) -> None:
    steering.check(knobs.steer)


SPEC = ModelSpec.typed(
    Knobs,
    name="reuseport",
    summary="one SO_REUSEPORT socket and accept queue per asyncio worker; kernel hashes",
    origin="nginx reuseport; Cloudflare's comparison",
    listeners=lambda knobs: knobs.workers,
    check=_check,
)


def run(ctx: RootContext) -> int:
    knobs = SPEC.knobs_of(ctx.config)
    steering.attach(knobs.steer, ctx.listeners)
    cpus = steering.prefer_cpus(ctx.listeners) if knobs.incoming_cpu else []

    def worker(slot: int) -> None:
        for i, other in enumerate(ctx.listeners):
            if i != slot:
                other.close()  # a worker holds its own socket only
        if cpus:  # its socket's CPU: the connections it prefers arrive there
            os.sched_setaffinity(0, {cpus[slot]})
        serve_listener(ctx, slot, ctx.listeners[slot], listener_index=slot)

    arbiter = Arbiter(ctx, worker)
    arbiter.start(len(ctx.listeners))
    return arbiter.run()
