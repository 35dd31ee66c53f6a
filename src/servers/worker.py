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
import time

from . import guard
from .arbiter import Arbiter
from .blocking import serve_connection
from .config import ConfigError, ServerConfig, check_range
from .models import ModelSpec
from .root import RootContext
from .scoreboard import DEFAULT_SLOTS, KIND_THREAD, State

START_SERVERS = 3  # Apache worker's StartServers
THREAD_DEATH = 1  # the status a thread's death records on the scoreboard (an exception)
THREADS_PER_CHILD = 25  # Apache's ThreadsPerChild


def check_threads(cfg: ServerConfig, extra_slots: int = 0) -> None:
    """ThreadsPerChild's range, and processes x (threads + extra) within the scoreboard."""
    tpc = cfg.threads_per_child or 0
    check_range("--threads-per-child (ThreadsPerChild)", tpc, 1, DEFAULT_SLOTS)
    procs = cfg.workers or 0
    if procs * (tpc + extra_slots) > DEFAULT_SLOTS:
        what = f"{procs} x ({tpc} + {extra_slots})" if extra_slots else f"{procs} x {tpc}"
        raise ConfigError(
            f"--workers x --threads-per-child must fit the scoreboard's {DEFAULT_SLOTS} "
            f"slots, got {what} = {procs * (tpc + extra_slots)}"
        )


SPEC = ModelSpec(
    name="worker",
    summary="Apache worker: processes x threads; a listener accepts only for an idle thread",
    origin="Apache httpd worker MPM",
    knobs=frozenset({"workers", "threads_per_child"}),
    defaults={"workers": START_SERVERS, "threads_per_child": THREADS_PER_CHILD},
    check=check_threads,
)


def run(ctx: RootContext) -> int:
    nthreads = ctx.config.threads_per_child or THREADS_PER_CHILD
    board = ctx.scoreboard

    def thread_main(
        slot: int, child: int, idle: threading.Semaphore, handed: queue.SimpleQueue[socket.socket]
    ) -> None:
        w = board.claim(slot, kind=KIND_THREAD, group=child)
        sock = None
        try:
            while True:
                w.state(State.WAITING)
                sock = None
                idle.release()  # one more idle thread: the listener may accept for it
                sock = handed.get()
                w.accepted()
                serve_connection(sock, w, ctx.limits)
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
        handed: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        for k in range(nthreads):
            start_thread(child * nthreads + k, child, idle, handed)
        listener = ctx.listener
        failed = guard.EverySecond("worker")
        while True:  # the listener thread
            idle.acquire()  # wait for an idle thread before accepting
            try:
                sock, _ = listener.accept()
            except OSError as e:  # EMFILE and the like: say so (once a second), back off
                if not isinstance(e, InterruptedError):
                    failed.hit(f"accept failed: {e}")
                    time.sleep(guard.ACCEPT_BACKOFF)
                idle.release()
                continue
            handed.put(sock)

    arbiter = Arbiter(ctx, child_main, slots_of=lambda i: range(i * nthreads, (i + 1) * nthreads))
    arbiter.start(ctx.config.workers or START_SERVERS)
    return arbiter.run()
