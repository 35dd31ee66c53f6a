"""The event loops of the asyncio models: making a loop, accepting on it, and adopting
connections accepted elsewhere (a cluster master, the goroutines acceptor). What a
connection does once on a loop is aio.py's.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import socket
import struct
from collections.abc import Callable
from functools import partial

from . import accept_policy, guard
from .acceptor import Acceptor, arrived_mono_ns
from .aio import AsyncWorker, HttpProtocol
from .root import RootContext
from .slots import State

try:
    import uvloop
except ImportError:  # a dependency, but the models run on asyncio's own loop without it
    uvloop = None  # type: ignore[assignment]

# what a cluster master sends with each fd: its Acceptor's since_ns and queue_us
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
    policy: str = "all",
    on_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None,
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

    def take(conn: socket.socket) -> asyncio.Task[object]:
        return adopt(loop, conn, worker.protocol, acceptor.since_ns, acceptor.queue_us)

    # how many connections a wake-up takes, and when (servers.accept_policy)
    on_accept = accept_policy.handler(policy, loop, fd, acceptor, take, backlog, worker)
    loop.add_reader(fd, on_accept)
    w.state(State.WAITING)
    if on_loop is not None:  # e.g. a watchdog's heartbeat (servers.watchdog)
        on_loop(loop)
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
) -> asyncio.Task[object]:
    """Serve an already-accepted socket on `loop` (must be called from the loop's thread),
    with its Acceptor's `since_ns` and `queue_us`. `handed`: accepted by
    another thread or process; if its bytes came after that accept (since_ns 0) and the
    accounting is on (queue_us >= 0), their kernel arrival time is when the server had
    them (this loop may have been busy meanwhile)."""
    if handed and not since_ns and queue_us >= 0:
        since_ns = arrived_mono_ns(sock)
    sock.setblocking(False)
    return loop.create_task(  # type: ignore[return-value]
        loop.connect_accepted_socket(partial(factory, since_ns, queue_us), sock)
    )
