"""Serving connections with blocking sockets: the I/O style of `single`, `proc_spawn`,
`prefork` and the threads of `worker`. One connection at a time per worker, its
keep-alive wait included, as Apache's prefork child or worker thread does; or, for the
threads of `event`, until the connection is idle between requests, when it is handed back
to be parked instead of waited for.

Request phases (when the slot records them): a request's in-server wait runs
from `had` (the accept, when its bytes were already there, or the listener seeing a parked
connection readable: the caller's `since_ns`; else the read that brought its bytes) to the
handler's start, its service from there to sendall() returning. A worker here blocks in
recv() while it waits for a request, so it reads the bytes as they arrive; time they spend
in the socket buffer while the worker is busy can only be earlier pipelined requests,
which are counted (a pipelined request's wait starts at the last read).

Memory: a large body is sent in pieces of the caller's read-only view (sendall of
memoryview slices), never joined to its head or copied, so a worker holds nothing per
reply: the bytes wait in the kernel's socket buffer. Building `head + body` cost 16 MiB per
/work?bytes=16777216 reply, 32 with a partial first send; 75 `event` threads kept 1.3 GiB
after 100 clients reset mid-reply (bench/bench_memory.py).

Reading: Timeout (`--timeout`) and, where the model has it, mod_reqtimeout's header and
body stages (reqtimeout.ReadClock): a client that sends a byte a second frees the worker
once its stage's deadline passes (20 s by Apache's default), with a 408.

The slot's current request (servers.inflight): the connection's client when it is taken;
a request's line and start when its first bytes are read (the line again while it is
still coming), answered when its response is out; a pipelined one begins as the one
before it is answered, at the read that brought it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from . import app, guard
from .acceptor import Acceptor
from .http import HttpConnection, Limits, Outgoing, ProtocolError, Request
from .inflight import Client, first_line
from .reqtimeout import ReadClock
from .slots import State
from .slotwriter import SlotWriter

PIECE = 256 * 1024  # a large body goes out in sendall()s of this much, each within Timeout


def accept_loop(
    listener: socket.socket,
    w: SlotWriter,
    limits: Limits,
    *,
    stopping: Callable[[], bool] | None = None,
) -> None:
    """Block in accept() (the kernel wakes blocked acceptors in FIFO order), serve, repeat;
    return before the next accept once `stopping()` is true (a graceful stop)."""

    def pause(seconds: float) -> None:  # accept() failed: not waiting for a connection
        w.state(State.CLOSING)
        time.sleep(seconds)

    acceptor = Acceptor(listener, "worker", pause=pause)
    while stopping is None or not stopping():
        w.state(State.WAITING)
        conn = acceptor.accept()
        if conn is not None:
            w.accepted()
            w.queued(acceptor.queue_us)
            serve_connection(conn, w, limits, since_ns=acceptor.since_ns, client=acceptor.client)


def serve_connection(
    sock: socket.socket,
    w: SlotWriter,
    limits: Limits,
    conn: HttpConnection | None = None,
    *,
    park: bool = False,
    since_ns: int = 0,
    client: Client | None = None,
) -> HttpConnection | None:
    """Serve one connection to its end: requests in order, keep-alive, timeouts, errors.

    Returns None once the connection is over and `sock` closed. With `park`, it returns
    instead as soon as the connection is idle between requests after a reply (keep-alive
    wait): the caller keeps `sock` open, parks it, and once it is readable passes it back
    here with the returned `conn`. Either way this slot stops counting it as open.
    `since_ns`: when the server had the first request's bytes (module docstring), 0 unknown;
    `client`: its peer and accept time, for the slot's current request (None: unknown).
    """
    # one function on purpose: every request of a blocking worker runs through this loop
    # kept in one piece (over 60 lines): its try/except/finally is what closes the socket and
    # settles the slot's open count on every path out (a bug, a reset, a park)
    if conn is None:
        conn = HttpConnection(limits)
    parked = False
    replied = False
    line_open = False  # the request line shown is not whole yet
    clock = ReadClock(limits.read_timeout, limits.request_timeout, time.monotonic())
    timed = w.phases is not None  # had/read_ns, monotonic ns (module docstring)
    had, read_ns = since_ns, 0
    req = w.req  # the slot's current request and client (module docstring)
    req.connected(client)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            ev = conn.next_event()
            if ev is None:
                if conn.must_close:
                    return None
                if conn.idle and park and replied:
                    parked = True
                    return conn
                if conn.reading_body and not clock.in_body:
                    clock.body(time.monotonic(), conn.buffered)
                fresh = conn.idle
                if not _receive(sock, conn, w, limits, clock):
                    return None
                if timed:
                    read_ns = time.monotonic_ns()
                    had = had or read_ns
                if fresh or line_open:  # a request's first bytes, or more of its line
                    line, whole = first_line(conn.pending())
                    if fresh:
                        req.begin(line, had / 1e9 if timed and had else time.monotonic())
                    else:
                        req.grew(line)
                    line_open = not whole
                continue
            start_ns = time.monotonic_ns() if timed else 0
            out = _answer(conn, ev, w)
            w.state(State.WRITING)
            _send(sock, out, limits)
            w.served(out.size)
            if timed:
                if isinstance(ev, Request):
                    w.request(had, start_ns, time.monotonic_ns())
                had = read_ns if conn.buffered else 0  # a pipelined one: since the last read
            if conn.buffered and not conn.must_close:  # a pipelined request, read already
                line, whole = first_line(conn.pending())
                req.begin(line, had / 1e9 if timed and had else time.monotonic())
                line_open = not whole
            else:
                req.end()
            replied = True
            if conn.must_close:
                return None
            clock.begin(time.monotonic())  # a pipelined request (or the next one's wait)
    except OSError:
        return None  # reset, timeout while writing, ...: this connection is over, worker lives
    except Exception as e:  # last resort: a bug must cost this connection, not the worker
        guard.unexpected("connection", e)
        if not replied or conn.idle:
            try:
                sock.settimeout(1.0)
                sock.sendall(conn.error_response(ProtocolError(500, "internal error")))
            except Exception:
                pass
        return None
    finally:
        req.end()  # answered, or over with the connection (a reset, a 408)
        if parked:
            w.gave()
        else:
            w.state(State.CLOSING)
            try:
                sock.close()
            finally:
                w.closed()


def _receive(
    sock: socket.socket, conn: HttpConnection, w: SlotWriter, limits: Limits, clock: ReadClock
) -> bool:
    """Wait for more of the connection's bytes (KeepAliveTimeout between requests, what is
    left of the clock's deadline within one) and feed them. False once the connection is
    over: EOF, or a timeout (answered 408 if a request was begun)."""
    if conn.idle and conn.requests_done:
        w.state(State.KEEPALIVE)
        timeout = limits.keepalive_timeout
    else:
        w.state(State.READING)
        timeout = clock.deadline - time.monotonic()
    try:
        if timeout <= 0:
            raise TimeoutError
        data = _recv(sock, timeout, fresh=not conn.requests_done)
    except TimeoutError:
        if not conn.idle:  # stopped mid-request: tell it, then close
            out = conn.timeout_response()
            sock.sendall(out)
            w.served(len(out))
        return False
    if not data:
        return False
    if conn.idle:  # a request's first byte: Timeout runs from here
        if conn.requests_done:
            clock.begin(time.monotonic())  # keep-alive: mod_reqtimeout's header stage too
        else:
            clock.restart(time.monotonic())  # the first: its header stage began at accept
    clock.received(len(data))
    conn.feed(data)
    return True


# Speed: a socket with a timeout costs CPython an ioctl per settimeout() and a
# poll() before every recv and send. A fresh connection's request is usually there by the
# time accept() returns, and a reply fits the empty send buffer, so both are first tried
# without waiting (MSG_DONTWAIT, one syscall); only when that would block does the socket
# get its timeout. Connection: close, per request: 9 syscalls -> 5 (accept4, setsockopt,
# recv, send, close). Later requests on a keep-alive connection wait as before (their bytes
# are rarely there yet: the client sends after reading the reply).


def _recv(sock: socket.socket, timeout: float, *, fresh: bool) -> bytes:
    if fresh and sock.gettimeout() is None:
        try:
            return sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
    sock.settimeout(timeout)
    return sock.recv(65536)


def _send(sock: socket.socket, out: Outgoing, limits: Limits) -> None:
    head, body = out
    if sock.gettimeout() is None:
        try:
            sent = sock.send(head, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent == len(head) and body is None:
            return
        head = head[sent:]  # a head, or a head and a small body: a small copy
    sock.settimeout(limits.request_timeout)
    if head:
        sock.sendall(head)
    if body is not None:
        # Timeout per piece, as Apache's per write: a client that takes nothing is dropped,
        # a slow one that keeps reading is not (one sendall's timeout is for its whole size)
        for i in range(0, body.nbytes, PIECE):
            sock.sendall(body[i : i + PIECE])


def _answer(conn: HttpConnection, ev: Request | ProtocolError, w: SlotWriter) -> Outgoing:
    """The response to a request (the app runs here) or to a protocol error."""
    if isinstance(ev, ProtocolError):
        return Outgoing(conn.error_response(ev))
    w.state(State.WORKING)
    reply = app.handle(ev)
    if reply.io_ms:
        time.sleep(reply.io_ms / 1000.0)  # blocking wait, as a blocking server does
    return conn.response(ev, reply.status, reply.body, reply.content_type)
