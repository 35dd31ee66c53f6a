"""Serving connections from an asyncio event loop: the I/O style of `many_accepts`,
`cluster`, `reuseport`, `goroutines` and the parked keep-alive connections of `event`.

A connection is an `asyncio.Protocol` over the shared HTTP layer; waiting for I/O is a
timer, so one loop holds thousands of connections. Timeouts are swept twice a second
instead of a timer per request, which keeps the hot path to a clock read.

Request phases (issue 16, when the slot records them): a connection brings its queue wait
and `since_ns` from whoever accepted it (this loop, a cluster master, the goroutines
acceptor: see acceptor.Acceptor), recorded in this loop's slot when it is made. A
request's in-server wait runs from `had` (that `since_ns`, when the bytes were there at
accept, so a hand-off and a busy loop count; else the data_received() that brought them;
for a pipelined request, the last read) to the handler starting; its service from there
to transport.write() returning. Not seen: the time a keep-alive request's bytes spend in
the socket buffer before the loop reads them (a loop busy with other connections reads
late). Seeing it would take a recvmsg() with a timestamp per read instead of asyncio's
recv(), ~1.5 us more per request and a transport of our own; the queue wait of new
connections and a busy loop's in-server wait of handed-off ones already show a busy loop.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import socket
import struct
import time
from collections.abc import Callable
from functools import partial

from . import app, guard
from .acceptor import Acceptor, arrived_mono_ns
from .http import HttpConnection, Limits, ProtocolError, Request
from .root import RootContext
from .scoreboard import SlotWriter, State

try:
    import uvloop
except ImportError:  # a dependency, but the models run on asyncio's own loop without it
    uvloop = None  # type: ignore[assignment]

SWEEP_INTERVAL = 0.5
READ_AHEAD = 64 * 1024  # bytes buffered past a request being served before reading pauses
# what a cluster master sends with each fd: its Acceptor's since_ns and queue_us (issue 16)
HANDOFF = struct.Struct("=qq")


class ExclusiveEpollSelector(selectors.EpollSelector):
    """An epoll selector that registers chosen fds with EPOLLEXCLUSIVE, as nginx does.

    With it the kernel wakes one waiter per new connection instead of all of them; its
    wait queue is LIFO, so the most recently idle (often the busiest) worker wins.
    """

    def __init__(self) -> None:
        super().__init__()
        self.exclusive: set[int] = set()

    def register(self, fileobj, events, data=None):  # type: ignore[no-untyped-def]
        fd = self._fileobj_lookup(fileobj)
        if fd not in self.exclusive or events != selectors.EVENT_READ:
            return super().register(fileobj, events, data)
        key = selectors._BaseSelectorImpl.register(self, fileobj, events, data)
        try:
            self._selector.register(key.fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        except BaseException:
            selectors._BaseSelectorImpl.unregister(self, fileobj)
            raise
        return key


class AsyncWorker:
    """One event loop's connections and its scoreboard slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop, w: SlotWriter, limits: Limits) -> None:
        self.loop = loop
        self.w = w
        self.limits = limits
        self.conns: set[HttpProtocol] = set()
        loop.call_later(SWEEP_INTERVAL, self._sweep)

    def protocol(self, since_ns: int = 0, queue_us: int = -1) -> HttpProtocol:
        return HttpProtocol(self, since_ns, queue_us)

    def settle(self) -> None:
        self.w.state(State.KEEPALIVE if self.conns else State.WAITING)

    def _sweep(self) -> None:
        now = time.monotonic()
        for c in [c for c in self.conns if c.deadline < now]:
            c.expire()
        self.loop.call_later(SWEEP_INTERVAL, self._sweep)


class HttpProtocol(asyncio.Protocol):
    """One connection. Backpressure (issue 11: one client that pipelined 64 requests for
    16 MiB and never read took a worker from 86 MiB to 1,106 MiB): while the transport's
    buffer is over its high-water mark (64 KiB) nothing more is read or parsed, so at most
    one response body is in flight beyond that buffer; a client that takes no data for
    --timeout is aborted (`close()` would wait for the buffer to drain, for ever); pipelined
    requests are served one per loop iteration, so a reset is seen between two of them and
    the rest of the pipeline is dropped instead of burning CPU for nobody."""

    __slots__ = (
        "conn",
        "deadline",
        "eof",
        "had",
        "paused",
        "progress",
        "queue_us",
        "read_ns",
        "scheduled",
        "start_ns",
        "transport",
        "waiting",
        "worker",
    )

    transport: asyncio.Transport

    def __init__(self, worker: AsyncWorker, since_ns: int = 0, queue_us: int = -1) -> None:
        self.worker = worker
        # issue 16, monotonic ns (module docstring): when the server had the next request,
        # the last read, the handler's start; the connection's queue wait (-1: unknown)
        self.had = since_ns
        self.read_ns = self.start_ns = 0
        self.queue_us = queue_us
        self.conn = HttpConnection(worker.limits)
        # self.transport: set by connection_made, before any other callback
        self.waiting = False  # an io_ms wait is in progress; later requests queue behind it
        self.paused = False  # the transport's write buffer is over its high-water mark
        self.scheduled = False  # the next pipelined request is due on the next loop turn
        self.deadline = time.monotonic() + worker.limits.request_timeout
        self.progress = 0.0  # when the client last took data (or we last wrote)
        self.eof = False  # the client half-closed with requests still to answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.worker.conns.add(self)
        self.worker.w.accepted()
        self.worker.w.queued(self.queue_us)
        self.worker.settle()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if self.worker.w.phases is not None:  # issue 16
            self.read_ns = time.monotonic_ns()
            self.had = self.had or self.read_ns
        if conn.idle:
            self.deadline = time.monotonic() + self.worker.limits.request_timeout
        conn.feed(data)
        if not (self.waiting or self.paused or self.scheduled):
            self.process()
        elif conn.buffered > READ_AHEAD:  # busy with earlier requests: stop reading
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.waiting or self.scheduled or self.paused:
            self.eof = True  # answer what was asked first, then close (see _after)
            return True
        return False  # half-closed by the client: close our side too

    def process(self) -> None:
        try:
            self._process()
        except Exception as e:  # last resort: a bug costs this connection, not the worker
            guard.unexpected("connection", e)
            t = self.transport
            if not t.is_closing():
                try:
                    t.write(self.conn.error_response(ProtocolError(500, "internal error")))
                    t.close()
                except Exception:
                    t.abort()
            self.worker.settle()

    def _process(self) -> None:
        conn = self.conn
        w = self.worker.w
        t = self.transport
        while not (t.is_closing() or self.paused):
            ev = conn.next_event()
            if ev is None:
                break
            if isinstance(ev, ProtocolError):
                out = conn.error_response(ev)
                t.write(out)
                w.served(len(out))
                break
            w.state(State.WORKING)
            if w.phases is not None:
                self.start_ns = time.monotonic_ns()
            reply = app.handle(ev)
            if reply.io_ms:
                self.waiting = True
                self.worker.loop.call_later(reply.io_ms / 1000.0, self._finish, ev, reply)
                return
            self._send(ev, reply)
            if conn.must_close:
                break
            if conn.buffered and not self.paused:
                # another pipelined request: serve it on the next loop turn, so that a
                # reset (or pause_writing) is seen first
                self.scheduled = True
                self.worker.loop.call_soon(self._next)
                return
        self._after()

    def _next(self) -> None:
        self.scheduled = False
        if not (self.waiting or self.paused):
            self._resume()

    def _resume(self) -> None:
        t = self.transport
        if not (t.is_closing() or self.eof):
            t.resume_reading()
        self.process()

    def _send(self, req: Request, reply: app.Reply) -> None:
        out = self.conn.response(req, reply.status, reply.body, reply.content_type)
        self.transport.write(out)
        w = self.worker.w
        w.served(len(out))
        if w.phases is not None:  # issue 16
            w.request(self.had, self.start_ns, time.monotonic_ns())
            self.had = self.read_ns if self.conn.buffered else 0

    def _finish(self, req: Request, reply: app.Reply) -> None:
        self.waiting = False
        if self.transport.is_closing():
            return
        self._send(req, reply)
        if self.conn.must_close or self.paused:
            self._after()
        else:
            self._resume()

    def _after(self) -> None:
        conn = self.conn
        limits = self.worker.limits
        now = self.progress = time.monotonic()  # we wrote: the --timeout for reading starts
        if conn.must_close or (self.eof and not (self.paused or self.scheduled)):
            self.transport.close()  # after the buffer drains; expire() aborts a stuck one
            self.deadline = now + limits.request_timeout
        else:
            wait = limits.keepalive_timeout if conn.idle else limits.request_timeout
            self.deadline = now + wait
        self.worker.settle()

    def expire(self) -> None:
        """Called by the sweep once the keep-alive or request deadline has passed."""
        t = self.transport
        timeout = self.worker.limits.request_timeout
        if t.get_write_buffer_size() or t.is_closing():
            # our data waits for the client: abort if it took nothing for --timeout
            now = time.monotonic()
            if now - self.progress >= timeout:
                t.abort()
            else:
                self.deadline = self.progress + timeout
            return
        if self.waiting:
            return
        if not self.conn.idle:
            out = self.conn.timeout_response()
            t.write(out)
            self.worker.w.served(len(out))
        t.close()

    def pause_writing(self) -> None:  # the client reads slower than we write
        self.paused = True
        self.progress = time.monotonic()
        self.deadline = self.progress + self.worker.limits.request_timeout
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        self.progress = time.monotonic()
        if self.transport.is_closing():
            return
        if not (self.waiting or self.scheduled):
            self._resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.drop()  # queued pipelined requests are not served to nobody
        self.worker.conns.discard(self)
        self.worker.w.closed()
        self.worker.settle()


def new_loop(*, exclusive: bool = False, native: bool = False) -> asyncio.AbstractEventLoop:
    """A loop for this thread. `native`: uvloop (libuv) where installed, for goroutines
    (see there why); the other models keep asyncio's own loop, whose accept behaviour
    their demos show."""
    if exclusive:
        loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop(ExclusiveEpollSelector())
    elif native and uvloop is not None:
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    loop.set_exception_handler(_exception_handler(guard.EverySecond("worker")))
    asyncio.set_event_loop(loop)
    return loop


def _exception_handler(
    accept_failed: guard.EverySecond,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, object]], None]:
    """asyncio's default handler prints a traceback per error: under `ulimit -n 64` that was
    71,988 of them in 8 s (its accept loop logs every EMFILE). One line instead, rate-limited;
    accept failures counted and reported once a second (asyncio itself retries the accept
    after 1 s)."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        message = str(context.get("message", "asyncio error"))
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in message:
            accept_failed.hit(f"accept failed: {exc}")
        elif isinstance(exc, BaseException):
            guard.unexpected(f"event loop ({message})", exc)
        else:
            guard.log(f"serverscope event loop: {message}")

    return handle


def serve_listener(
    ctx: RootContext,
    slot: int,
    listener: socket.socket,
    *,
    listener_index: int = 0,
    exclusive: bool = False,
) -> None:
    """A worker process that accepts on `listener` itself, taking up to `backlog`
    connections per wake-up as asyncio's accept handler does.

    Not `loop.create_server`: on EMFILE CPython 3.11's handler logs a traceback and
    schedules a retry for each of the `backlog` iterations of its loop instead of stopping
    (under `ulimit -n 64` with 200 clients: 39,795 tracebacks, 16 MB, in 8 s). Here the
    first EMFILE/ENFILE stops accepting for ACCEPT_BACKOFF and is reported once a second."""
    w = ctx.scoreboard.claim(slot, listener=listener_index)
    loop = new_loop(exclusive=exclusive)
    fd = listener.fileno()
    if exclusive:
        loop._selector.exclusive.add(fd)  # type: ignore[attr-defined]
    worker = AsyncWorker(loop, w, ctx.limits)
    listener.setblocking(False)
    backlog = ctx.config.backlog

    def pause(seconds: float) -> None:  # accept() failed: stop accepting for a while
        loop.remove_reader(fd)
        loop.call_later(seconds, loop.add_reader, fd, on_accept)

    acceptor = Acceptor(listener, "worker", pause=pause)

    def on_accept() -> None:
        for _ in range(backlog):
            conn = acceptor.accept()
            if conn is None:
                return
            adopt(loop, conn, worker.protocol, acceptor.since_ns, acceptor.queue_us)

    loop.add_reader(fd, on_accept)
    w.state(State.WAITING)
    loop.run_forever()


def serve_handed(ctx: RootContext, slot: int, channel: socket.socket) -> None:
    """A worker process that never accepts: connections arrive as fds over `channel`."""
    w = ctx.scoreboard.claim(slot)
    loop = new_loop()
    worker = AsyncWorker(loop, w, ctx.limits)
    channel.setblocking(False)

    lost = guard.EverySecond("cluster worker")
    header = ctx.scoreboard.header

    def on_fds() -> None:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(channel, 256 * HANDOFF.size, 256)
        except BlockingIOError:
            return
        except OSError as e:
            lost.hit(f"receiving connections failed: {e}")
            return
        if not msg and not fds:  # the master is gone
            loop.stop()
            return
        sent = -(-len(msg) // HANDOFF.size)
        if sent > len(fds):
            # one record per fd sent; the kernel drops the fds it cannot install (EMFILE):
            # those connections are lost, so count them where the master counts its own
            header.handoff_failures += sent - len(fds)
            lost.hit(f"{sent - len(fds)} connections lost in hand-off (no free fd)")
        for i, fd in enumerate(fds):
            since_ns, queue_us = (0, -1)
            if len(msg) >= (i + 1) * HANDOFF.size:  # the master's Acceptor figures
                since_ns, queue_us = HANDOFF.unpack_from(msg, i * HANDOFF.size)
            sock = socket.socket(fileno=fd)
            adopt(loop, sock, worker.protocol, since_ns, queue_us, handed=True)

    loop.add_reader(channel.fileno(), on_fds)
    w.state(State.WAITING)
    loop.run_forever()


def adopt(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    factory: Callable[[int, int], HttpProtocol],
    since_ns: int = 0,
    queue_us: int = -1,
    *,
    handed: bool = False,
) -> None:
    """Serve an already-accepted socket on `loop` (must be called from the loop's thread),
    with its Acceptor's `since_ns` and `queue_us` (issue 16). `handed`: accepted by
    another thread or process; if its bytes came after that accept (since_ns 0) and the
    accounting is on (queue_us >= 0), their kernel arrival time is when the server had
    them (this loop may have been busy meanwhile)."""
    if handed and not since_ns and queue_us >= 0:
        since_ns = arrived_mono_ns(sock)
    sock.setblocking(False)
    loop.create_task(loop.connect_accepted_socket(partial(factory, since_ns, queue_us), sock))
