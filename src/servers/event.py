"""event: Apache's event MPM. As worker (P processes x ThreadsPerChild threads, a listener
thread per process), but a worker thread serves a connection only while a request is
being processed: once the connection is idle in keep-alive wait, the thread hands it back
to its process's listener thread, which parks it in its event loop (a `selectors` loop)
and gives it to an idle thread again only when it becomes readable, or closes it when
KeepAliveTimeout passes. So keep-alive clients that hold their connections idle do not
pin threads, and the load that starves prefork and worker does not starve event.

The listener accepts only while a thread is idle and the process's open connections stay
below ThreadsPerChild + AsyncRequestWorkerFactor x idle threads (Apache's limit); a
readable parked connection goes to a thread before any new connection is accepted.

Fixed pool as in `worker` (--workers processes, default 3, no spare-thread adaptation).
Scoreboard: child i's threads take slots i*T .. i*T+T-1 (kind thread, group i); its
listener thread takes slot P*T + i (kind thread, group i, listener 0, role listener),
after every thread slot. The listener's slot counts the accepts, and as `open` the connections the
process holds but no thread serves (parked, or readable and waiting for a thread); a
thread's slot counts the one it is serving. Hand-offs move the count from one slot to the
other (each slot written only by its own thread), so the sum over the slots is the
number of open connections, exact but for a hand-off in flight.
"""

from __future__ import annotations

import os
import queue
import selectors
import socket
import threading
import time
from collections import deque

from plumbing.process import drain

from . import guard
from .arbiter import Arbiter
from .blocking import serve_connection
from .config import ServerConfig, check_range
from .http import HttpConnection
from .models import ModelSpec
from .root import RootContext
from .scoreboard import KIND_THREAD, ROLE_LISTENER, State
from .worker import START_SERVERS, THREAD_DEATH, THREADS_PER_CHILD, check_threads

ASYNC_FACTOR = 2.0  # Apache's AsyncRequestWorkerFactor

Job = tuple[socket.socket, HttpConnection | None]  # a connection, and its state if resumed


def _check(cfg: ServerConfig) -> None:
    check_threads(cfg, extra_slots=1)
    check_range("--async-factor (AsyncRequestWorkerFactor)", cfg.async_factor or 0, 0, 100)


SPEC = ModelSpec(
    name="event",
    summary="Apache event: as worker, but idle keep-alive connections wait in an event loop",
    origin="Apache httpd event MPM",
    knobs=frozenset({"workers", "threads_per_child", "async_factor"}),
    defaults={
        "workers": START_SERVERS,
        "threads_per_child": THREADS_PER_CHILD,
        "async_factor": ASYNC_FACTOR,
    },
    check=_check,
)

_ACCEPT = object()  # selector data: the listening socket
_WAKE = object()  # selector data: a thread reported back


def run(ctx: RootContext) -> int:
    cfg = ctx.config
    nprocs = cfg.workers or START_SERVERS
    nthreads = cfg.threads_per_child or THREADS_PER_CHILD
    factor = cfg.async_factor if cfg.async_factor is not None else ASYNC_FACTOR
    board = ctx.scoreboard
    limits = ctx.limits

    def thread_main(
        slot: int, child: int, jobs: queue.SimpleQueue[Job], done: queue.SimpleQueue[Job], wake: int
    ) -> None:
        w = board.claim(slot, kind=KIND_THREAD, group=child)
        sock = None
        try:
            while True:
                w.state(State.WAITING)
                sock = None
                sock, conn = jobs.get()
                w.took()
                kept = serve_connection(sock, w, limits, conn, park=True)  # None: closed
                w.state(State.WAITING)
                done.put((sock, kept))
                sock = None
                report(wake)
        except BaseException as e:  # the thread dies anyway: record it and replace it
            guard.unexpected("event thread", e)
            board.mark_dead(slot, THREAD_DEATH)
            if sock is not None:  # give the listener its idle thread and connection back
                sock.close()
                done.put((sock, None))
                report(wake)
            threading.Thread(
                target=thread_main, args=(slot, child, jobs, done, wake), daemon=True
            ).start()

    def report(wake: int) -> None:
        try:
            os.write(wake, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the listener has a wake-up pending anyway

    def child_main(child: int) -> None:
        lw = board.claim(
            nprocs * nthreads + child, kind=KIND_THREAD, group=child, listener=0, role=ROLE_LISTENER
        )
        jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        done: queue.SimpleQueue[Job] = queue.SimpleQueue()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        for k in range(nthreads):
            args = (child * nthreads + k, child, jobs, done, wake_w)
            threading.Thread(target=thread_main, args=args, daemon=True).start()
        listener = ctx.listener
        listener.setblocking(False)  # every event child polls it; accept() must not block
        sel = selectors.DefaultSelector()
        sel.register(wake_r, selectors.EVENT_READ, _WAKE)
        parked: dict[socket.socket, tuple[float, HttpConnection]] = {}  # in deadline order
        ready: deque[Job] = deque()  # readable parked connections waiting for a thread
        idle = nthreads
        conns = 0  # open connections of this process
        accepting = False
        failed = guard.EverySecond("event")

        def dispatch(job: Job) -> None:
            nonlocal idle
            jobs.put(job)
            idle -= 1
            lw.gave()

        lw.state(State.WAITING)
        while True:
            while ready and idle:
                dispatch(ready.popleft())
            want = idle > 0 and conns < nthreads + factor * idle
            if want != accepting:
                if want:
                    sel.register(listener, selectors.EVENT_READ, _ACCEPT)
                else:
                    sel.unregister(listener)
                accepting = want
            timeout = None
            if parked:
                timeout = max(0.0, next(iter(parked.values()))[0] - time.monotonic())
            for key, _ in sel.select(timeout):
                if key.data is _WAKE:
                    drain(wake_r)
                    while True:
                        try:
                            sock, kept = done.get_nowait()
                        except queue.Empty:
                            break
                        idle += 1
                        if kept is None:  # the thread closed it
                            conns -= 1
                        else:  # idle in keep-alive wait: park it
                            lw.took()
                            parked[sock] = (time.monotonic() + limits.keepalive_timeout, kept)
                            sel.register(sock, selectors.EVENT_READ, kept)
                elif key.data is _ACCEPT:
                    while idle > 0 and conns < nthreads + factor * idle:
                        try:
                            sock, _ = listener.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as e:  # EMFILE and the like: say so, back off
                            failed.hit(f"accept failed: {e}")
                            time.sleep(guard.ACCEPT_BACKOFF)
                            break
                        lw.accepted()
                        conns += 1
                        dispatch((sock, None))
                else:  # a parked connection is readable: its next request (or EOF)
                    sock = key.fileobj  # type: ignore[assignment]
                    sel.unregister(sock)
                    del parked[sock]
                    ready.append((sock, key.data))
            now = time.monotonic()
            while parked:  # KeepAliveTimeout of the parked connections, oldest first
                sock, (deadline, _) = next(iter(parked.items()))
                if deadline > now:
                    break
                del parked[sock]
                sel.unregister(sock)
                sock.close()
                lw.closed()
                conns -= 1
            lw.state(State.KEEPALIVE if parked or ready else State.WAITING)

    arbiter = Arbiter(
        ctx,
        child_main,
        slots_of=lambda i: [*range(i * nthreads, (i + 1) * nthreads), nprocs * nthreads + i],
    )
    arbiter.start(nprocs)
    return arbiter.run()
