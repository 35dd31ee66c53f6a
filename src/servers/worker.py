"""worker: Apache's worker MPM. P processes x ThreadsPerChild threads. In each process one
listener thread blocks in accept() only while one of its worker threads is idle, and hands
the connection to that thread, which keeps it to its end, keep-alive wait included. So a
process whose threads are all busy stops accepting: new connections go to another
process, or wait in the accept queue once every thread holds a connection (the same
starvation as prefork, with less memory per worker).

The pool is fixed: --workers processes (Apache's StartServers, 3) of --threads-per-child
threads (25), started at once and replaced if they die; Apache's adaptation between
MinSpareThreads and MaxSpareThreads is not modelled. Scoreboard: child i's threads take
slots i*T .. i*T+T-1 (kind thread, group i); the listener thread has no slot.
"""

from __future__ import annotations

import queue
import socket
import threading
from dataclasses import dataclass

from . import guard, knobs
from .acceptor import Acceptor, arrived_mono_ns
from .arbiter import Arbiter
from .blocking import serve_connection
from .config import ConfigError
from .inflight import Client
from .models import ModelSpec
from .root import RootContext
from .scoreboard import DEFAULT_SLOTS
from .slots import Kind, State

THREAD_DEATH = 1  # the status a thread's death records on the scoreboard (an exception)

# a connection the listener hands to a thread: the socket, its Acceptor.since_ns and
# queue_us, so the thread that serves it records its phases, and its client
Handed = tuple[socket.socket, int, int, Client | None]


@dataclass(frozen=True)
class Knobs:
    # Apache worker's own defaults: StartServers 3 (here: processes), ThreadsPerChild 25
    workers: int = 3
    threads_per_child: int = 25
    request_read_timeout: str = knobs.default("request_read_timeout")  # Apache's


def check_threads(given: Knobs, extra_slots: int = 0) -> None:
    """ThreadsPerChild's range, and processes x (threads + extra) within the scoreboard."""
    tpc = given.threads_per_child
    knobs.check("threads_per_child", tpc, high=DEFAULT_SLOTS)
    procs = given.workers
    if procs * (tpc + extra_slots) > DEFAULT_SLOTS:
        what = f"{procs} x ({tpc} + {extra_slots})" if extra_slots else f"{procs} x {tpc}"
        both = f"{knobs.KNOB['workers'].option} x {knobs.KNOB['threads_per_child'].option}"
        raise ConfigError(
            f"{both} must fit the scoreboard's {DEFAULT_SLOTS} slots, "
            f"got {what} = {procs * (tpc + extra_slots)}"
        )


SPEC = ModelSpec.typed(
    Knobs,
    name="worker",
    summary="Apache worker: processes x threads; a listener accepts only for an idle thread",
    origin="Apache httpd worker MPM",
    check=check_threads,
)


def run(ctx: RootContext) -> int:
    knobs = SPEC.knobs_of(ctx.config)
    nthreads = knobs.threads_per_child
    board = ctx.scoreboard

    def thread_main(
        slot: int, child: int, idle: threading.Semaphore, handed: queue.SimpleQueue[Handed]
    ) -> None:
        w = board.claim(slot, kind=Kind.THREAD, group=child)
        sock = None
        try:
            while True:
                w.state(State.WAITING)
                sock = None
                idle.release()  # one more idle thread: the listener may accept for it
                sock, since_ns, queue_us, client = handed.get()
                w.accepted()
                w.queued(queue_us)  # the listener's measure, in this thread's slot
                if not since_ns and queue_us >= 0:  # bytes came after the accept
                    since_ns = arrived_mono_ns(sock)
                serve_connection(sock, w, ctx.limits, since_ns=since_ns, client=client)
        except BaseException as e:  # the thread dies anyway: record it and replace it
            guard.unexpected("worker thread", e)
            if sock is not None:
                sock.close()
            board.mark_dead(slot, THREAD_DEATH)
            # the dead thread's idle.release() was used for the connection it held; its
            # replacement releases one again when it waits, so the listener's count is right
            start_thread(slot, child, idle, handed)

    def start_thread(*args: object) -> None:
        threading.Thread(target=thread_main, args=args, daemon=True).start()

    def child_main(child: int) -> None:
        idle = threading.Semaphore(0)
        handed: queue.SimpleQueue[Handed] = queue.SimpleQueue()
        for k in range(nthreads):
            start_thread(child * nthreads + k, child, idle, handed)
        acceptor = Acceptor(ctx.listener, "worker")
        while True:  # the listener thread
            idle.acquire()  # wait for an idle thread before accepting
            sock = acceptor.accept()
            if sock is None:
                idle.release()  # that thread is still idle
            else:
                handed.put((sock, acceptor.since_ns, acceptor.queue_us, acceptor.client))

    arbiter = Arbiter(ctx, child_main, slots_of=lambda i: range(i * nthreads, (i + 1) * nthreads))
    arbiter.start(knobs.workers)
    return arbiter.run()
