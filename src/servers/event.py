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

The current request of a listener's slot (servers.inflight): the oldest readable parked
connection waiting for a thread (no line: no thread has read it yet), with how many
wait; none waiting: the connection parked last, none in progress.

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
from dataclasses import dataclass

from plumbing.process import drain

from . import guard
from .acceptor import Acceptor, arrived_mono_ns
from .arbiter import Arbiter
from .blocking import serve_connection
from .http import HttpConnection
from .inflight import Client
from .models import ModelSpec
from .root import RootContext
from .slots import Kind, Role, State
from .worker import THREAD_DEATH, check_threads
from .worker import Knobs as WorkerKnobs

# a connection, its state if resumed, and since_ns: when the server had its
# request's bytes (the accept, or the listener seeing a parked connection readable), and
# queue_us: a new connection's queue wait (-1: none to record); then its client. The
# thread that serves it records them, so every phase lands in its slot.
Job = tuple[socket.socket, HttpConnection | None, int, int, Client | None]
# given back: closed (None), or parked, with its client
Done = tuple[socket.socket, HttpConnection | None, Client | None]


@dataclass(frozen=True)
class Knobs(WorkerKnobs):
    async_factor: float = 2.0  # Apache event's own default


def _check(knobs: Knobs) -> None:
    check_threads(knobs, extra_slots=1)


SPEC = ModelSpec.typed(
    Knobs,
    name="event",
    summary="Apache event: as worker, but idle keep-alive connections wait in an event loop",
    origin="Apache httpd event MPM",
    check=_check,
)

_ACCEPT = object()  # selector data: the listening socket
_WAKE = object()  # selector data: a thread reported back


def run(ctx: RootContext) -> int:
    knobs = SPEC.knobs_of(ctx.config)
    nprocs, nthreads = knobs.workers, knobs.threads_per_child

    def child_main(child: int) -> None:
        Listener(ctx, child, nprocs, nthreads, knobs.async_factor).run()

    arbiter = Arbiter(
        ctx,
        child_main,
        slots_of=lambda i: [*range(i * nthreads, (i + 1) * nthreads), nprocs * nthreads + i],
    )
    arbiter.start(nprocs)
    return arbiter.run()


class Listener:
    """One child process's listener thread, shaped as Apache's (event.c `listener_thread`):
    a loop over its pollset that hands readable connections to idle threads (`dispatch`),
    accepts while the connection limit allows (`accept`), parks the connections threads
    give back and takes the readable ones out (`readable`), and closes the parked ones
    whose KeepAliveTimeout passed (`expire`). State lives in the instance, written by this
    thread only; the worker threads talk to it through `jobs` and `done` and a wake-up pipe.
    """

    def __init__(
        self, ctx: RootContext, child: int, nprocs: int, nthreads: int, factor: float
    ) -> None:
        board = ctx.scoreboard
        self.ctx = ctx
        self.child = child
        self.nthreads = nthreads
        self.factor = factor
        self.slot = board.claim(
            nprocs * nthreads + child, kind=Kind.THREAD, group=child, listener=0, role=Role.LISTENER
        )
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.listener = ctx.listener
        self.listener.setblocking(False)  # every event child polls it; accept() must not block
        self.acceptor = Acceptor(self.listener, "event")
        self.timed = self.slot.phases is not None
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.wake_r, selectors.EVENT_READ, _WAKE)
        # deadline, its state, its client; in deadline order
        self.parked: dict[socket.socket, tuple[float, HttpConnection, Client | None]] = {}
        # readable parked connections waiting for a thread, and since when (monotonic)
        self.ready: deque[tuple[Job, float]] = deque()
        self.idle = nthreads
        self.conns = 0  # open connections of this process
        self.accepting = False

    def run(self) -> None:
        for k in range(self.nthreads):
            self.start_thread(self.child * self.nthreads + k)
        self.slot.state(State.WAITING)
        while True:
            while self.ready and self.idle:
                self.dispatch(self.ready.popleft()[0])
                self.show_ready()
            self.poll_listener(self.may_accept())
            timeout = None
            if self.parked:
                timeout = max(0.0, next(iter(self.parked.values()))[0] - time.monotonic())
            for key, _ in self.sel.select(timeout):
                if key.data is _WAKE:
                    self.given_back()
                elif key.data is _ACCEPT:
                    self.accept()
                else:
                    self.readable(key.fileobj, key.data)  # type: ignore[arg-type]
            self.expire(time.monotonic())
            self.slot.state(State.KEEPALIVE if self.parked or self.ready else State.WAITING)

    def may_accept(self) -> bool:
        """Apache's limit: an idle thread, and open connections below ThreadsPerChild +
        AsyncRequestWorkerFactor x idle threads."""
        return self.idle > 0 and self.conns < self.nthreads + self.factor * self.idle

    def poll_listener(self, want: bool) -> None:
        if want != self.accepting:
            if want:
                self.sel.register(self.listener, selectors.EVENT_READ, _ACCEPT)
            else:
                self.sel.unregister(self.listener)
            self.accepting = want

    def dispatch(self, job: Job) -> None:
        """A connection (new, or readable again) to an idle thread."""
        self.jobs.put(job)
        self.idle -= 1
        self.slot.gave()

    def accept(self) -> None:
        while self.may_accept():
            sock = self.acceptor.accept()
            if sock is None:
                break
            self.slot.accepted()
            self.conns += 1
            acc = self.acceptor
            self.dispatch((sock, None, acc.since_ns, acc.queue_us, acc.client))

    def given_back(self) -> None:
        """Threads reported back: each is idle again, its connection closed or parked."""
        drain(self.wake_r)
        while True:
            try:
                sock, kept, client = self.done.get_nowait()
            except queue.Empty:
                return
            self.idle += 1
            if kept is None:  # the thread closed it
                self.conns -= 1
            else:  # idle in keep-alive wait: park it
                self.slot.took()
                deadline = time.monotonic() + self.ctx.limits.keepalive_timeout
                self.parked[sock] = (deadline, kept, client)
                self.sel.register(sock, selectors.EVENT_READ, kept)
                if not self.ready:
                    self.slot.req.show(client, b"", 0.0, 0)

    def readable(self, sock: socket.socket, conn: HttpConnection) -> None:
        """A parked connection is readable (its next request, or EOF): queue it for a thread."""
        self.sel.unregister(sock)
        client = self.parked.pop(sock)[2]
        now_ns = time.monotonic_ns()
        self.ready.append(((sock, conn, now_ns if self.timed else 0, -1, client), now_ns / 1e9))
        self.show_ready()

    def show_ready(self) -> None:
        """The slot's current request: the oldest connection waiting for a thread."""
        if self.ready:
            job, since = self.ready[0]
            self.slot.req.show(job[4], b"", since, len(self.ready))
        else:
            self.slot.req.end()

    def expire(self, now: float) -> None:
        """KeepAliveTimeout of the parked connections, oldest first."""
        while self.parked:
            sock, (deadline, _, _) = next(iter(self.parked.items()))
            if deadline > now:
                return
            del self.parked[sock]
            self.sel.unregister(sock)
            sock.close()
            self.slot.closed()
            self.conns -= 1

    # -- the worker threads --------------------------------------------------------------
    def start_thread(self, slot: int) -> None:
        threading.Thread(target=self.thread_main, args=(slot,), daemon=True).start()

    def thread_main(self, slot: int) -> None:
        board = self.ctx.scoreboard
        w = board.claim(slot, kind=Kind.THREAD, group=self.child)
        sock = None
        try:
            while True:
                w.state(State.WAITING)
                sock = None
                sock, conn, since_ns, queue_us, client = self.jobs.get()
                w.took()
                w.queued(queue_us)
                if not since_ns and queue_us >= 0:  # new, its bytes came after the accept
                    since_ns = arrived_mono_ns(sock)
                # None: closed
                kept = serve_connection(
                    sock, w, self.ctx.limits, conn, park=True, since_ns=since_ns, client=client
                )
                w.state(State.WAITING)
                self.done.put((sock, kept, client))
                sock = None
                self.report()
        except BaseException as e:  # the thread dies anyway: record it and replace it
            guard.unexpected("event thread", e)
            board.mark_dead(slot, THREAD_DEATH)
            if sock is not None:  # give the listener its idle thread and connection back
                sock.close()
                self.done.put((sock, None, None))
                self.report()
            self.start_thread(slot)

    def report(self) -> None:
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the listener has a wake-up pending anyway
