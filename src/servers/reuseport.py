"""reuseport: one SO_REUSEPORT listening socket, with its own accept queue, per asyncio
worker (nginx's `reuseport`). The kernel spreads new connections by a hash of the
4-tuple: counts come out even, but the hash ignores load, so a stalled worker's own
queue keeps growing while the others idle. --steer replaces the hash with a program on
the group (by the receiving CPU, or round robin), --incoming-cpu has socket i prefer
CPU i's connections (servers.steering).

The sockets are opened by the supervisor (so a busy port is told at once); the master
keeps them and gives socket i to whichever worker runs in slot i, so a restarted worker
finds its predecessor's queue waiting. --worker-timeout kills a worker whose loop has gone
silent and forks a new one (servers.watchdog). With --migrate the master drops its copies once
the workers have theirs (servers.migrate): a worker that exits closes its socket and the
kernel hands the queue to the others; its successor joins the group with a fresh one."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from . import acceptor, migrate, steering
from . import knobs as table
from .arbiter import Arbiter
from .loops import serve_listener
from .models import ModelSpec
from .root import RootContext
from .watchdog import Watchdog


@dataclass(frozen=True)
class Knobs:
    workers: int = 4
    max_keepalive_requests: int = 1000  # nginx keepalive_requests
    steer: str = table.default("steer")
    incoming_cpu: bool = table.default("incoming_cpu")
    migrate: bool = table.default("migrate")
    worker_timeout: float = table.default("worker_timeout")


def _check(knobs: Knobs) -> None:
    steering.check(knobs.steer)
    if knobs.migrate:
        migrate.check(knobs.workers)


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
    address = ctx.listeners[0].getsockname()
    dog = Watchdog(knobs.worker_timeout, len(ctx.listeners)) if knobs.worker_timeout else None

    def worker(slot: int) -> None:
        for i, other in enumerate(ctx.listeners):
            if i != slot:
                other.close()  # a worker holds its own socket only
        sock = ctx.listeners[slot]
        if sock.fileno() < 0:  # --migrate: the master dropped it; join the group afresh
            sock = migrate.join(address, ctx.config.backlog)
            if cpus:
                sock.setsockopt(socket.SOL_SOCKET, steering.SO_INCOMING_CPU, cpus[slot])
            if ctx.config.phases:
                acceptor.stamp_arrivals(sock)
        if cpus:  # its socket's CPU: the connections it prefers arrive there
            os.sched_setaffinity(0, {cpus[slot]})
        beat = dog.on_loop(slot) if dog else None
        serve_listener(ctx, slot, sock, listener_index=slot, on_loop=beat)

    arbiter = Arbiter(ctx, worker)
    if dog is not None:  # the master looks on its tick; a new worker starts with a beat

        def watch() -> None:
            dog.check(arbiter.slot_pids())

        arbiter.tick, arbiter.before_fork, arbiter.manage = dog.tick, dog.beat, watch
    arbiter.start(len(ctx.listeners))
    if knobs.migrate:  # each worker's socket is its own now: its close hands the queue on
        for sock in ctx.listeners:
            sock.close()
    return arbiter.run()
