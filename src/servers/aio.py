"""Serving connections from an asyncio event loop: the I/O style of `many_accepts`,
`cluster`, `reuseport`, `goroutines` and the parked keep-alive connections of `event`.

A connection is an `asyncio.Protocol` over the shared HTTP layer; waiting for I/O is a
timer, so one loop holds thousands of connections. Timeouts are swept twice a second
instead of a timer per request, which keeps the hot path to a clock read.

Request phases (when the slot records them): a connection brings its queue wait
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

Memory: a large body (over http.INLINE_BODY) is written in PIECEs of its read-only view
as the transport drains (pause_writing/resume_writing), so a connection holds at most one
piece (64 KiB: the high-water mark is 0, the kernel's socket buffer does the buffering),
whatever the reply's size; the bodies in flight on one loop are capped (MAX_STREAMS,
32 MiB) and a large reply past the cap is answered 503. Handing the transport a 16 MiB
reply whole cost 16 MiB per client that did not read: 100 of them took many_accepts to
+1.4 GiB (bench/bench_memory.py).

The slot's current request (servers.inflight) is the loop's oldest request in progress
(from its first bytes to its response handed to the transport), with the count of
them; none in progress: the last one answered, or the newest connection if it came since.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from . import app, guard
from .http import INLINE_BODY, HttpConnection, Limits, ProtocolError, Request
from .inflight import Client, client_of, first_line
from .slots import State
from .slotwriter import SlotWriter

SWEEP_INTERVAL = 0.5
READ_AHEAD = 64 * 1024  # bytes buffered past a request being served before reading pauses
PIECE = 64 * 1024  # a large body is written this much at a time, as the transport drains
# the transports' write buffer high-water mark: 0, so writing pauses as soon as the kernel's
# socket buffer is full and a connection holds at most one write (asyncio's default 64 KiB
# let each hold up to 128 KiB, and 100 clients that did not read left +4 MiB a round)
HIGH_WATER = 0
STREAM_BUDGET = 32 * 1024 * 1024  # bytes one loop may hold for large bodies in flight
MAX_STREAMS = STREAM_BUDGET // PIECE  # 512: past it, a large reply is answered 503
BUSY_BODY = b"too many large replies in flight; retry later\n"


class AsyncWorker:
    """One event loop's connections and its scoreboard slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop, w: SlotWriter, limits: Limits) -> None:
        self.loop = loop
        self.w = w
        self.limits = limits
        self.conns: set[HttpProtocol] = set()
        self.streams = 0  # connections writing a large body (each holds <= PIECE)
        self.max_streams = MAX_STREAMS
        # requests in progress, oldest first (an OrderedDict: its first key is O(1) after
        # many deletions at the front, a dict's is not)
        self.active: OrderedDict[HttpProtocol, None] = OrderedDict()
        self.when_idle: Callable[[], object] | None = None  # called once no request is left
        loop.call_later(SWEEP_INTERVAL, self._sweep)

    def protocol(self, since_ns: int = 0, queue_us: int = -1) -> HttpProtocol:
        return HttpProtocol(self, since_ns, queue_us)

    def settle(self) -> None:
        self.w.state(State.KEEPALIVE if self.conns else State.WAITING)

    # -- the slot's current request (module docstring) -----------------------------------
    def begin(self, p: HttpProtocol) -> None:
        """`p`'s request began (its `line` and `began` are set)."""
        active = self.active
        if p in active:  # a pipelined one after the one answered: it queues anew
            del active[p]
        active[p] = None
        self.show(p)

    def grew(self, p: HttpProtocol) -> None:
        """More of `p`'s request line came: shown if `p`'s request is the oldest."""
        if next(iter(self.active), None) is p:
            self.show(p)

    def end(self, p: HttpProtocol) -> None:
        """`p`'s request was answered (or its connection is over)."""
        if p in self.active:
            del self.active[p]
            self.show(p)
            if not self.active and self.when_idle is not None:
                idle, self.when_idle = self.when_idle, None
                idle()

    def show(self, last: HttpProtocol) -> None:
        active = self.active
        if active:
            p = next(iter(active))
            self.w.req.show(p.client, p.line, p.began, len(active))
        else:
            self.w.req.show(last.client, last.line, last.began, 0)

    def _sweep(self) -> None:
        now = time.monotonic()
        for c in [c for c in self.conns if c.deadline < now]:
            c.expire()
        self.loop.call_later(SWEEP_INTERVAL, self._sweep)


class HttpProtocol(asyncio.Protocol):
    """One connection. Backpressure (one client that pipelines requests and never reads
    must not grow the worker without bound): while the transport
    holds unsent bytes (its high-water mark is 0: the kernel's socket buffer is full)
    nothing more is read, parsed or written (a large body resumes from resume_writing,
    once they are sent); a client that takes no data for
    --timeout is aborted (`close()` would wait for the buffer to drain, for ever);
    pipelined requests are served one per loop iteration, so a reset is seen between two
    of them and the rest of the pipeline is dropped instead of burning CPU for nobody."""

    __slots__ = (
        "began",
        "body",
        "client",
        "conn",
        "deadline",
        "eof",
        "had",
        "line",
        "line_open",
        "offset",
        "paused",
        "progress",
        "queue_us",
        "read_ns",
        "scheduled",
        "size",
        "start_ns",
        "transport",
        "waiting",
        "worker",
    )

    transport: asyncio.Transport

    def __init__(self, worker: AsyncWorker, since_ns: int = 0, queue_us: int = -1) -> None:
        self.worker = worker
        # monotonic ns (module docstring): when the server had the next request,
        # the last read, the handler's start; the connection's queue wait (-1: unknown)
        self.had = since_ns
        self.read_ns = self.start_ns = 0
        self.queue_us = queue_us
        self.conn = HttpConnection(worker.limits)
        # self.transport: set by connection_made, before any other callback
        self.waiting = False  # an io_ms wait is in progress; later requests queue behind it
        self.paused = False  # the transport holds unsent bytes (pause_writing)
        self.scheduled = False  # the next pipelined request is due on the next loop turn
        self.body: memoryview | None = None  # a large body being written, piece by piece
        self.offset = 0  # ... how much of it is written
        self.size = 0  # ... and the whole reply's size, head included
        self.deadline = time.monotonic() + worker.limits.request_timeout
        self.progress = 0.0  # when the client last took data (or we last wrote)
        self.eof = False  # the client half-closed with requests still to answer
        self.client: Client | None = None  # its peer and accept time
        self.line = b""  # the request line of its current (or last) request, as it came
        self.began = 0.0  # when that request's first bytes came (monotonic)
        self.line_open = False  # the line is not whole yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.set_write_buffer_limits(HIGH_WATER)  # type: ignore[attr-defined]
        worker = self.worker
        worker.conns.add(self)
        worker.w.accepted()
        worker.w.queued(self.queue_us)
        self.client = client_of(transport.get_extra_info("peername"), time.monotonic())
        if not worker.active:  # the newest connection, no request in progress
            worker.w.req.show(self.client, b"", 0.0, 0)
        worker.settle()

    @property
    def busy(self) -> bool:
        """Serving a request already: a new one waits (its bytes stay buffered)."""
        return self.waiting or self.paused or self.scheduled or self.body is not None

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if self.worker.w.phases is not None:
            self.read_ns = time.monotonic_ns()
            self.had = self.had or self.read_ns
        if conn.idle:
            self.deadline = time.monotonic() + self.worker.limits.request_timeout
        fresh = conn.idle and not self.busy  # (while busy: a pipelined one, begun at _sent)
        conn.feed(data)
        if fresh or self.line_open:  # a request's first bytes, or more of its line
            self.line, whole = first_line(conn.pending())
            self.line_open = not whole
            if fresh:
                self.began = self.had / 1e9 if self.had else time.monotonic()
                self.worker.begin(self)
            else:
                self.worker.grew(self)
        if not self.busy:
            self.process()
        elif conn.buffered > READ_AHEAD:  # busy with earlier requests: stop reading
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.busy:
            self.eof = True  # answer what was asked first, then close (see _after)
            return True
        return False  # half-closed by the client: close our side too

    def process(self) -> None:
        try:
            self._process()
        except Exception as e:  # last resort: a bug costs this connection, not the worker
            guard.unexpected("connection", e)
            t = self.transport
            if self.body is not None:
                t.abort()  # a reply is half written: a 500 now would be read as its body
            elif not t.is_closing():
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
            if not self._send(ev, reply):
                break  # a large body waits for the client: resume_writing goes on with it
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

    def _send(self, req: Request, reply: app.Reply) -> bool:
        """Write the reply; False while a large body is still being written."""
        worker = self.worker
        status, body = reply.status, reply.body
        large = len(body) > INLINE_BODY and req.method != "HEAD"
        if large and worker.streams >= worker.max_streams:
            status, body = 503, BUSY_BODY  # the loop's budget for large bodies is spent
            large = False
        out = self.conn.response(req, status, body, reply.content_type)
        self.transport.write(out.head)
        if out.body is None:
            self._sent(out.size)
            return True
        self.body, self.offset, self.size = out.body, 0, out.size
        worker.streams += 1
        return self._pump()

    def _pump(self) -> bool:
        """Write pieces of the body until the transport is full (False) or it is all out."""
        body = self.body
        assert body is not None
        t = self.transport
        n = body.nbytes
        off = self.offset
        while off < n:
            if self.paused or t.is_closing():
                self.offset = off
                return False
            t.write(body[off : off + PIECE])  # may call pause_writing
            off += PIECE
        self._drop_body()
        self._sent(self.size)
        return True

    def _drop_body(self) -> None:
        if self.body is not None:
            self.body = None
            self.worker.streams -= 1

    def _sent(self, size: int) -> None:
        w = self.worker.w
        w.served(size)
        if w.phases is not None:
            w.request(self.had, self.start_ns, time.monotonic_ns())
            self.had = self.read_ns if self.conn.buffered else 0
        conn = self.conn
        if conn.buffered and not conn.must_close:  # a pipelined request, read already
            self.line, whole = first_line(conn.pending())
            self.line_open = not whole
            self.began = self.had / 1e9 if self.had else time.monotonic()
            self.worker.begin(self)
        else:
            self.worker.end(self)

    def _finish(self, req: Request, reply: app.Reply) -> None:
        self.waiting = False
        if self.transport.is_closing():
            return
        if not self._send(req, reply) or self.conn.must_close or self.paused:
            self._after()
        else:
            self._resume()

    def _after(self) -> None:
        conn = self.conn
        limits = self.worker.limits
        now = self.progress = time.monotonic()  # we wrote: the --timeout for reading starts
        done = self.body is None  # no body still to write
        if done and (conn.must_close or (self.eof and not (self.paused or self.scheduled))):
            self.transport.close()  # after the buffer drains; expire() aborts a stuck one
            self.deadline = now + limits.request_timeout
        else:
            wait = limits.keepalive_timeout if conn.idle and done else limits.request_timeout
            self.deadline = now + wait
        self.worker.settle()

    def expire(self) -> None:
        """Called by the sweep once the keep-alive or request deadline has passed."""
        t = self.transport
        timeout = self.worker.limits.request_timeout
        if t.get_write_buffer_size() or t.is_closing() or self.body is not None:
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
        if self.body is not None:
            if not self._pump():
                return  # full again
            if self.conn.must_close or self.eof:
                self._after()
                return
        if not (self.waiting or self.scheduled):
            self._resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.drop()  # queued pipelined requests are not served to nobody
        self._drop_body()
        self.worker.end(self)
        self.worker.conns.discard(self)
        self.worker.w.closed()
        self.worker.settle()
