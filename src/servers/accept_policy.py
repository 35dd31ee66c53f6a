"""How a worker that accepts on a shared socket takes connections at a wake-up: the
balancing policies of the servers that share one accept queue.

- `all`: every ready connection, up to `backlog`, in one go. asyncio's accept handler
  does this, and so does libuv (Node): its uv__server_io calls accept() until EAGAIN;
  only UV_TCP_SINGLE_ACCEPT=1 (off by default) makes it nanosleep(1 ns) between accepts
  so that another process gets a turn. Under a burst the first worker woken takes most.
- `one`: one connection per wake-up, back to the event loop between two (nginx without
  multi_accept). With plain epoll every waiter is woken, so the burst is shared among the
  workers that are not busy running a request.
- `less-busy`: puma's wait_for_less_busy_worker: before accepting, a worker that is
  serving (a request in progress, or a connection accepted whose request has not been
  answered yet) waits LESS_BUSY_WAIT, off the socket, so an idle worker takes the
  connection first, or less if its last request ends sooner (puma's @not_full.wait);
  then it accepts anyway (as puma does). One per wake-up.
- `rotate`: nginx's ngx_reorder_accept_events: with EPOLLEXCLUSIVE the kernel wakes the
  first waiter of the socket's wait queue, so one worker gets nearly every connection;
  every ROTATE_EVERY accepts a worker re-arms the listener (epoll_ctl DEL then ADD),
  which moves it to the back of the queue. One per wake-up (nginx's multi_accept off).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from .acceptor import Acceptor
from .aio import AsyncWorker

POLICIES = ("all", "one", "less-busy", "rotate")
ROTATE_EVERY = 16  # nginx's ngx_reorder_accept_events re-adds the listener every 16 accepts
LESS_BUSY_WAIT = 0.005  # puma's wait_for_less_busy_worker default, seconds

Take = Callable[[socket.socket], "asyncio.Task[object] | None"]


def handler(
    policy: str,
    loop: asyncio.AbstractEventLoop,
    fd: int,
    acceptor: Acceptor,
    take: Take,
    backlog: int,
    worker: AsyncWorker,
) -> Callable[[], None]:
    """The listener's read callback for `policy`; `take` serves an accepted connection
    (and returns the task that starts serving it, for `less-busy` to count)."""
    if policy == "all":

        def take_all() -> None:
            for _ in range(backlog):
                conn = acceptor.accept()
                if conn is None:
                    return
                take(conn)

        return take_all

    if policy == "one":

        def take_one() -> None:
            conn = acceptor.accept()
            if conn is not None:
                take(conn)

        return take_one

    if policy == "rotate":
        accepted = 0

        def take_rotating() -> None:
            nonlocal accepted
            conn = acceptor.accept()
            if conn is None:
                return
            take(conn)
            accepted += 1
            if accepted % ROTATE_EVERY == 0:  # re-arm: to the back of the wait queue
                loop.remove_reader(fd)
                loop.add_reader(fd, take_rotating)

        return take_rotating

    if policy == "less-busy":
        starting = 0  # accepted, not yet on the loop (their connection_made has not run)
        waited = False

        def started(_task: object) -> None:
            nonlocal starting
            starting -= 1

        def serving() -> bool:
            if starting or worker.active:
                return True
            # a connection whose first request has not begun is work on its way
            return any(not c.began for c in worker.conns)

        timer: asyncio.TimerHandle | None = None

        def back() -> None:
            nonlocal timer
            if timer is not None:  # once: the timer or the last request's end, first
                timer.cancel()
                timer = None
                worker.when_idle = None
                loop.add_reader(fd, take_less_busy)

        def take_less_busy() -> None:
            nonlocal starting, waited, timer
            if serving() and not waited:
                waited = True
                loop.remove_reader(fd)  # an idle worker may take it meanwhile
                # as puma's @not_full.wait: the wait ends early when a request ends
                timer = loop.call_later(LESS_BUSY_WAIT, back)
                worker.when_idle = back
                return
            waited = False
            conn = acceptor.accept()
            if conn is None:
                return
            task = take(conn)
            if task is not None:
                starting += 1
                task.add_done_callback(started)

        return take_less_busy

    raise ValueError(f"unknown accept policy {policy!r}; choose one of: {', '.join(POLICIES)}")
