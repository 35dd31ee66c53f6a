"""cluster: the master accepts every connection and hands its fd to asyncio workers over
Unix sockets (SCM_RIGHTS), cycling through them (Node's cluster module, round robin).
Distribution is even by construction; the price is that every connection passes through
one single-threaded master, whose CPU becomes the bottleneck.

--policy least-connections (envoy's exact_balance, and HAProxy's leastconn): the master
hands each connection to the worker holding the fewest: those it handed it since it
started, less those the worker closed (its slot's accepted - open), so a burst sent
before the workers record anything is counted too. Ties go round robin."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from . import guard
from . import knobs as table
from .acceptor import Acceptor
from .arbiter import Arbiter
from .loops import HANDOFF, serve_handed
from .models import ModelSpec
from .root import RootContext


@dataclass(frozen=True)
class Knobs:
    workers: int = 4
    max_keepalive_requests: int = 0  # unlimited, as Node
    policy: str = table.default("policy")


SPEC = ModelSpec.typed(
    Knobs,
    name="cluster",
    summary="master accepts and hands each connection to asyncio workers, round robin",
    origin="Node simple_cluster.js",
)

ACCEPTS_PER_WAKEUP = 64


def run(ctx: RootContext) -> int:
    knobs = SPEC.knobs_of(ctx.config)
    n = knobs.workers
    least = knobs.policy == "least-connections"
    board = ctx.scoreboard
    sent: dict[int, tuple[int, int]] = {}  # slot -> (its worker's generation, handed it)
    channels: dict[int, socket.socket] = {}  # slot -> the master's end
    child_ends: dict[int, socket.socket] = {}
    listener = ctx.listener
    header = ctx.scoreboard.header

    def before_fork(slot: int) -> None:
        old = channels.pop(slot, None)
        if old is not None:
            old.close()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.setblocking(False)
        channels[slot] = mine
        child_ends[slot] = theirs

    def after_fork(slot: int) -> None:
        child_ends.pop(slot).close()

    def worker(slot: int) -> None:
        for other, ch in channels.items():
            if other != slot:
                ch.close()
        channels[slot].close()
        listener.close()  # a cluster worker never accepts
        serve_handed(ctx, slot, child_ends[slot])

    arbiter = Arbiter(ctx, worker, before_fork=before_fork, after_fork=after_fork)
    turn = 0
    acceptor = Acceptor(listener, "cluster")  # its pause: not a busy loop on a full table
    handoff_failed = guard.EverySecond("cluster")

    def handed(slot: int) -> int:
        gen, count = sent.get(slot, (0, 0))
        return count if gen == board.slot(slot).generation else 0  # a new worker: from 0

    def held(slot: int) -> int:
        s = board.slot(slot)
        return handed(slot) - (s.accepted - s.open)

    def on_accept() -> None:
        nonlocal turn
        for _ in range(ACCEPTS_PER_WAKEUP):
            conn = acceptor.accept()
            if conn is None:  # none queued, or accept() failed: the connection stays queued
                return
            with conn:
                # the connection's timestamps travel with it
                record = HANDOFF.pack(acceptor.since_ns, acceptor.queue_us)
                live = sorted(arbiter.slot_pids())
                order = [live[(turn + i) % len(live)] for i in range(len(live))]
                turn += 1
                if least:
                    order.sort(key=held)  # stable: ties stay in turn
                for slot in order:
                    try:
                        socket.send_fds(channels[slot], [record], [conn.fileno()])
                        header.dispatches += 1
                        if least:
                            sent[slot] = (board.slot(slot).generation, handed(slot) + 1)
                        break
                    except (BlockingIOError, BrokenPipeError, ConnectionResetError, KeyError):
                        continue  # that worker is stalled or gone: the next one takes it
                else:  # no worker took it: the client gets a reset; count it, say so
                    header.handoff_failures += 1
                    handoff_failed.hit("no worker could take a connection; it was closed")

    listener.setblocking(False)
    arbiter.add_reader(listener, on_accept)
    arbiter.start(n)
    return arbiter.run()
