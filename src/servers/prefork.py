"""prefork: Apache's prefork MPM. Like proc_spawn, processes each blocking in accept() and
serving one connection at a time, keep-alive wait included; but the pool adapts. Once a
second the master counts idle children (slot `_` or `S`): with fewer than MinSpareServers
it spawns 1, then 2, 4, ... up to 32 a second while the shortage lasts, never past
MaxRequestWorkers; with more than MaxSpareServers it stops one (the highest idle slot).

The starvation it is known for: keep-alive clients that hold their connections idle pin
every child, the CPU idles, and new connections wait in the accept queue until a
KeepAliveTimeout frees a child.

A child is stopped gracefully, as Apache's `graceful-stop` (SIGWINCH): idle in accept()
it leaves at once; serving, it finishes that connection first. StartServers larger than
MaxRequestWorkers is lowered to it, as Apache does.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from . import knobs
from .arbiter import Arbiter
from .blocking import accept_loop
from .config import ConfigError
from .models import ModelSpec
from .root import RootContext
from .scoreboard import DEFAULT_SLOTS
from .slots import State

MAX_SPAWN_RATE = 32  # Apache's MAX_SPAWN_RATE
GRACEFUL_STOP = signal.SIGWINCH  # Apache's graceful-stop signal


@dataclass(frozen=True)
class Knobs:
    # Apache prefork's own defaults
    start_servers: int = 5
    min_spare: int = 5
    max_spare: int = 10
    max_workers: int = 256
    request_read_timeout: str = knobs.default("request_read_timeout")  # Apache's


def _check(k: Knobs) -> None:
    for name in ("start_servers", "min_spare", "max_workers"):  # a scoreboard slot each
        knobs.check(name, getattr(k, name), high=DEFAULT_SLOTS)
    max_spare, min_spare = k.max_spare, k.min_spare
    if not min_spare <= max_spare <= DEFAULT_SLOTS:
        low = knobs.KNOB["min_spare"].option
        raise ConfigError(
            f"{knobs.KNOB['max_spare'].option} (MaxSpareServers) must be between {low} "
            f"({min_spare}) and {DEFAULT_SLOTS}, got {max_spare}"
        )


SPEC = ModelSpec.typed(
    Knobs,
    name="prefork",
    summary="Apache prefork: adaptive pool of processes, one connection each (keep-alive too)",
    origin="Apache httpd prefork MPM",
    check=_check,
)


def run(ctx: RootContext) -> int:
    knobs = SPEC.knobs_of(ctx.config)
    max_workers, min_spare, max_spare = knobs.max_workers, knobs.min_spare, knobs.max_spare
    board = ctx.scoreboard

    def child(slot: int) -> None:
        w = board.claim(slot)
        stopping = False

        def graceful(_sig: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True
            if board.slot(slot).state == State.WAITING:
                raise SystemExit(0)  # idle in accept(): leave now

        signal.signal(GRACEFUL_STOP, graceful)
        accept_loop(ctx.listener, w, ctx.limits, stopping=lambda: stopping)

    arbiter = Arbiter(ctx, child)
    spawn_rate = 1

    def maintain() -> None:
        """Apache's perform_idle_server_maintenance, once a tick."""
        nonlocal spawn_rate
        slots = board.read().slots
        live = [s for s, pid in arbiter.slot_pids().items() if pid not in arbiter.retiring]
        idle = [s for s in live if slots[s].state in (State.STARTING, State.WAITING)]
        if len(idle) > max_spare:
            # a WAITING child has its graceful-stop handler (a STARTING one may not yet)
            waiting = [s for s in idle if slots[s].state == State.WAITING]
            if waiting:
                arbiter.retire(arbiter.slot_pids()[max(waiting)], GRACEFUL_STOP)
            spawn_rate = 1
        elif len(idle) < min_spare:
            taken = set(arbiter.children.values()) | {s for _, s in arbiter.pending}
            free = [s for s in range(max_workers) if s not in taken][:spawn_rate]
            for s in free:  # the lowest free slots
                arbiter.spawn(s)
            if not free:  # MaxRequestWorkers reached
                spawn_rate = 1
            elif spawn_rate < MAX_SPAWN_RATE:
                spawn_rate *= 2
        else:
            spawn_rate = 1

    arbiter.manage = maintain
    arbiter.start(min(knobs.start_servers, max_workers))
    return arbiter.run()
