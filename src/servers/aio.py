"""Serving connections from an asyncio event loop: the I/O style of `many_accepts`,
`cluster`, `reuseport`, `goroutines` and the parked keep-alive connections of `event`.

A connection is an `asyncio.Protocol` over the shared HTTP layer; waiting for I/O is a
timer, so one loop holds thousands of connections. Timeouts are swept twice a second
instead of a timer per request, which keeps the hot path to a clock read.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import socket
import time
from collections.abc import Callable

from . import app
from .http import HttpConnection, Limits, ProtocolError, Request
from .root import RootContext
from .scoreboard import SlotWriter, State

SWEEP_INTERVAL = 0.5


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

    def protocol(self) -> HttpProtocol:
        return HttpProtocol(self)

    def settle(self) -> None:
        self.w.state(State.KEEPALIVE if self.conns else State.WAITING)

    def _sweep(self) -> None:
        now = time.monotonic()
        for c in [c for c in self.conns if c.deadline < now]:
            c.expire()
        self.loop.call_later(SWEEP_INTERVAL, self._sweep)


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("conn", "deadline", "transport", "waiting", "worker")

    def __init__(self, worker: AsyncWorker) -> None:
        self.worker = worker
        self.conn = HttpConnection(worker.limits)
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # an io_ms wait is in progress; later requests queue behind it
        self.deadline = time.monotonic() + worker.limits.request_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.worker.conns.add(self)
        self.worker.w.accepted()
        self.worker.settle()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn.idle:
            self.deadline = time.monotonic() + self.worker.limits.request_timeout
        conn.feed(data)
        if not self.waiting:
            self.process()

    def eof_received(self) -> bool:
        return False  # half-closed by the client: close our side too

    def process(self) -> None:
        conn = self.conn
        w = self.worker.w
        while (ev := conn.next_event()) is not None:
            if isinstance(ev, ProtocolError):
                out = conn.error_response(ev)
                self.transport.write(out)
                w.served(len(out))
                break
            w.state(State.WORKING)
            reply = app.handle(ev)
            if reply.io_ms:
                self.waiting = True
                self.worker.loop.call_later(reply.io_ms / 1000.0, self._finish, ev, reply)
                return
            self._send(ev, reply)
            if conn.must_close:
                break
        self._after()

    def _send(self, req: Request, reply: app.Reply) -> None:
        out = self.conn.response(req, reply.status, reply.body, reply.content_type)
        self.transport.write(out)
        self.worker.w.served(len(out))

    def _finish(self, req: Request, reply: app.Reply) -> None:
        self.waiting = False
        if self.transport.is_closing():
            return
        self._send(req, reply)
        if self.conn.must_close:
            self._after()
        else:
            self.process()

    def _after(self) -> None:
        conn = self.conn
        if conn.must_close:
            self.transport.close()
        else:
            limits = self.worker.limits
            wait = limits.keepalive_timeout if conn.idle else limits.request_timeout
            self.deadline = time.monotonic() + wait
        self.worker.settle()

    def expire(self) -> None:
        """Called by the sweep once the keep-alive or request deadline has passed."""
        if self.waiting or self.transport.is_closing():
            return
        if not self.conn.idle:
            out = self.conn.timeout_response()
            self.transport.write(out)
            self.worker.w.served(len(out))
        self.transport.close()

    def pause_writing(self) -> None:  # the client reads slower than we write
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.conns.discard(self)
        self.worker.w.closed()
        self.worker.settle()


def new_loop(*, exclusive: bool = False) -> asyncio.AbstractEventLoop:
    if exclusive:
        loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop(ExclusiveEpollSelector())
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def serve_listener(
    ctx: RootContext,
    slot: int,
    listener: socket.socket,
    *,
    listener_index: int = 0,
    exclusive: bool = False,
) -> None:
    """A worker process that accepts on `listener` itself, with asyncio's accept handler
    (which takes up to `backlog` connections per wake-up)."""
    w = ctx.scoreboard.claim(slot, listener=listener_index)
    loop = new_loop(exclusive=exclusive)
    if exclusive:
        loop._selector.exclusive.add(listener.fileno())  # type: ignore[attr-defined]
    worker = AsyncWorker(loop, w, ctx.limits)
    listener.setblocking(False)
    loop.run_until_complete(
        loop.create_server(worker.protocol, sock=listener, backlog=ctx.config.backlog)
    )
    w.state(State.WAITING)
    loop.run_forever()


def serve_handed(ctx: RootContext, slot: int, channel: socket.socket) -> None:
    """A worker process that never accepts: connections arrive as fds over `channel`."""
    w = ctx.scoreboard.claim(slot)
    loop = new_loop()
    worker = AsyncWorker(loop, w, ctx.limits)
    channel.setblocking(False)

    def on_fds() -> None:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(channel, 256, 256)
        except BlockingIOError:
            return
        if not msg and not fds:  # the master is gone
            loop.stop()
            return
        for fd in fds:
            adopt(loop, socket.socket(fileno=fd), worker.protocol)

    loop.add_reader(channel.fileno(), on_fds)
    w.state(State.WAITING)
    loop.run_forever()


def adopt(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], HttpProtocol]
) -> None:
    """Serve an already-accepted socket on `loop` (must be called from the loop's thread)."""
    sock.setblocking(False)
    loop.create_task(loop.connect_accepted_socket(factory, sock))
