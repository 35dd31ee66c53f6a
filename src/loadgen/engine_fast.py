"""The fast engine: HTTP/1.1 GET over an asyncio Protocol, for serverscope's own servers.

Hand-written rather than httpx/aiohttp because those spend tens of microseconds of Python
per request, and a generator slower than the server hides the server's limits (see
engine.py). Per request it does one `transport.write` of pre-built bytes and, on the
response, one `find` for the end of the head; a head equal to the previous response's
(serverscope's servers send no Date) is not parsed again. It does not decode chunked bodies
(a chunked response counts as `bad_response`; use the httpx engine). Read timeouts are
checked by one sweeper task every 50 ms rather than a timer per request.

The asyncio machinery of a request (a future, its task's wake-up, the coroutines'
resumption) outweighs our own lines, so a closed loop's requests are chained by callback
(`FastClient.burst`: the callback that completes a response records it and sends the next),
and elsewhere `request()` returns the response's future itself, no coroutine (profile and
figures: bench/README.md, bench_loadgen.py).

A level with `trickle_ms` (slowloris) sends each request a byte at a time, that far apart,
on a connection of its own (a close mid-request is a reset, not a retry); its read timeout
runs from the last byte, and a server that answers (408) or closes early ends the sending.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import Any

from .engine import Client, Engine, RequestError
from .fast_proto import FastProtocol
from .levels import LoadLevel

_monotonic = time.monotonic


class FastClient(Client):
    __slots__ = (
        "driver",
        "engine",
        "gen",
        "proto",
        "t_conn",
        "t_first",
        "t_last",
        "t_start",
        "user",
    )

    def __init__(self, engine: FastEngine) -> None:
        self.engine = engine
        self.proto: FastProtocol | None = None
        self.t_start = self.t_conn = self.t_first = self.t_last = 0.0
        self.driver: Any = None  # the driver whose user runs a chain (burst)
        self.gen = 0
        self.user = 0

    # -- chained requests: a closed loop without a coroutine per request --------------------
    def burst(self, driver: Any, user: int) -> asyncio.Future[None] | None:
        """Send requests back to back on this user's open keep-alive connection, each
        from the callback that completes the one before, and do the driver's accounting
        (sent, in flight, its `busy` entry, the recorder) here. The future resolves when
        the chain ends: the driver's `gen` changed (a new level, pause, stop), the server
        asked to close, or a request failed (counted, then raised). None without an open
        connection (the driver's own path connects). Closed loop, no think time, no cap
        only (the driver checks). Saves the future, the task wake-up and the coroutine
        resumption of every request: bench_loadgen.py."""
        p = self.proto
        if p is None or p.closed or p.transport.is_closing():  # type: ignore[union-attr]
            return None
        if self.engine.trickle:
            return None  # a byte at a time: request() does it
        fut: asyncio.Future[None] = self.engine.loop.create_future()
        self.driver = driver
        self.gen = driver.gen
        self.user = user
        p.chain = True
        self._chain_send(p, fut, _monotonic())
        return fut

    def _chain_send(self, p: FastProtocol, fut: asyncio.Future[Any], start: float) -> None:
        d = self.driver
        rec = d.rec
        rec.sent += 1
        rec.in_flight += 1
        d.busy[self.user] = start
        self._send_reused(p, fut, start)

    def _chain_end(self) -> None:
        d = self.driver
        d.rec.in_flight -= 1
        del d.busy[self.user]

    def chain_next(self, p: FastProtocol, fut: asyncio.Future[Any]) -> None:
        """A chained request completed (from data_received): record it, send the next."""
        if fut.done():  # cancelled: the run ended; what is in flight was counted as cut
            p.chain = False
            return
        now = _monotonic()
        self._chain_end()
        start = self.t_conn
        d = self.driver
        d.rec.ok(p.status, start, start, start, p.t_first, p.t_last, now)
        if p.close_after or d.gen != self.gen:
            p.chain = False
            if p.close_after:
                p.transport.close()  # type: ignore[union-attr]
                self.proto = None
            fut.set_result(None)
            return
        self._chain_send(p, fut, now)

    def chain_fail(self, fut: asyncio.Future[Any], kind: str) -> None:
        if fut.done():
            return
        self._chain_end()
        self.driver.rec.error(kind)
        fut.set_exception(RequestError(kind))

    def chain_lost(self, p: FastProtocol, fut: asyncio.Future[Any]) -> None:
        """The connection closed under a chained request."""
        if fut.done():
            return
        if p.remaining == -2:  # a body delimited by the close: complete
            p.t_last = _monotonic()
            p.close_after = False
            self.chain_next(p, fut)
            if not fut.done():
                fut.set_result(None)
            return
        if not p.got:
            # the server closed the idle keep-alive connection as we sent: not sent after
            # all; the driver's own path sends it again on a new connection
            self._chain_end()
            self.driver.rec.sent -= 1
            fut.set_result(None)
            return
        self.chain_fail(fut, "reset")

    async def _connect(self) -> FastProtocol:
        e = self.engine
        t = _monotonic()
        try:
            async with asyncio.timeout(e.level.connect_timeout):
                _, proto = await e.loop.create_connection(e.factory, e.target.addr, e.target.port)
        except TimeoutError:
            raise RequestError("connect_timeout", connect=True) from None
        except ConnectionRefusedError:
            raise RequestError("refused", connect=True) from None
        except OSError:
            # unreachable, out of ports or files: the connection could not be made
            raise RequestError("refused", connect=True) from None
        self.t_conn = now = _monotonic()
        e.rec.connect.record_us(int((now - t) * 1e6))
        return proto  # type: ignore[return-value]

    def request(self, start: float | None = None) -> Awaitable[int]:
        """The response's future itself on a reused connection (no coroutine: this runs
        once per request; bench_loadgen.py), else a coroutine that connects first. The
        protocol finishes the request (times, closing) before it resolves the future."""
        if start is None:
            start = _monotonic()
        self.t_start = start
        if self.engine.trickle:
            return self._trickled(start)
        p = self.proto
        if p is None or p.closed or p.transport.is_closing():  # type: ignore[union-attr]
            return self._connect_and_send()
        fut = self.engine.loop.create_future()
        self._send_reused(p, fut, start)
        return fut

    def _send_reused(self, p: FastProtocol, fut: asyncio.Future[Any], start: float) -> None:
        """Send the request on the open connection `p`, its answer due in `fut` (the
        chained and the awaited path share this)."""
        self.t_conn = start
        e = self.engine
        p.fut = fut
        p.client = self
        p.reused = True
        p.got = False
        p.close_after = False
        p.deadline = start + e.read_timeout
        p.transport.write(e.req)  # type: ignore[union-attr]
        if p.buf:  # bytes came before the request: its response begins with them
            p.data_received(b"")

    def _send(self, p: FastProtocol, fut: asyncio.Future[int]) -> None:
        """Send on a connection just made (t_conn is when it was ready)."""
        e = self.engine
        p.fut = fut
        p.client = self
        p.reused = False
        p.got = False
        p.close_after = False
        p.deadline = self.t_conn + e.read_timeout
        p.transport.write(e.req)  # type: ignore[union-attr]
        if p.buf:  # bytes came before the request (a server that speaks first)
            p.data_received(b"")

    async def _connect_and_send(self) -> int:
        self.proto = p = await self._connect()
        fut = self.engine.loop.create_future()
        self._send(p, fut)
        return await fut

    async def _trickled(self, start: float) -> int:
        """Send the request a byte every `trickle` seconds (module docstring)."""
        e = self.engine
        p = self.proto
        if p is None or p.closed or p.transport.is_closing():  # type: ignore[union-attr]
            self.proto = p = await self._connect()
        else:
            self.t_conn = start
        fut: asyncio.Future[int] = e.loop.create_future()
        p.fut = fut
        p.client = self
        p.reused = False  # closed under us: a reset, never resent whole
        p.got = False
        p.close_after = False
        p.deadline = math.inf  # the read timeout starts once the request is out
        req, gap = e.req, e.trickle
        try:
            for i in range(len(req)):
                if fut.done() or p.closed:
                    break
                p.transport.write(req[i : i + 1])  # type: ignore[union-attr]
                if i + 1 < len(req):
                    await asyncio.wait([fut], timeout=gap)  # the server may answer first
            else:
                p.deadline = _monotonic() + e.read_timeout
        except asyncio.CancelledError:
            fut.cancel()  # the run ended: nobody awaits the answer
            raise
        return await fut

    def retry(self, fut: asyncio.Future[int]) -> None:
        """Send the request of `fut` again on a new connection (see connection_lost)."""
        task = self.engine.loop.create_task(self._retry(fut))
        self.engine.retries.add(task)
        task.add_done_callback(self.engine.retries.discard)

    async def _retry(self, fut: asyncio.Future[int]) -> None:
        # the request starts again here: the time lost on the closed connection is its
        # wait; its connect phase is this handshake alone, as the connect histogram has it
        self.t_start = _monotonic()
        try:
            self.proto = p = await self._connect()
        except RequestError as err:
            if not fut.done():
                fut.set_exception(err)
            return
        if fut.done():  # cancelled meanwhile (the run ended)
            return
        self._send(p, fut)

    async def close(self) -> None:
        p = self.proto
        self.proto = None
        if p is not None and p.chain:  # the run ended under a chain: nothing more counts
            p.chain = False
            p.fut = None
        if p is not None and p.transport is not None:
            p.transport.close()


class FastEngine(Engine):
    name = "fast"

    def __init__(self, target, level, rec) -> None:  # type: ignore[no-untyped-def]
        super().__init__(target, level, rec)
        self.loop = asyncio.get_running_loop()
        self.conns: set[FastProtocol] = set()  # open connections, for the timeout sweeper
        self.retries: set[asyncio.Task[None]] = set()  # see FastClient.retry
        self.factory = lambda: FastProtocol(self)
        self.last_head = b""  # the last response head parsed, and what it said:
        self.last_parsed: tuple[int, int, bool] = (0, 0, False)  # status, length, close
        self._sweeper: asyncio.Task[None] | None = None
        self.set_level(level)

    def set_level(self, level: LoadLevel) -> None:
        self.level = level
        self.keepalive = level.keepalive
        self.read_timeout = level.read_timeout
        self.trickle = level.trickle_ms / 1000.0  # > 0: requests go a byte at a time
        conn = "" if level.keepalive else "Connection: close\r\n"
        self.req = (
            f"GET {self.target.path_for(level)} HTTP/1.1\r\n"
            f"Host: {self.target.host_header}\r\n"
            f"User-Agent: serverscope-loadgen\r\n{conn}\r\n"
        ).encode("latin-1")

    def client(self) -> FastClient:
        return FastClient(self)

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = _monotonic()
            late = [p for p in self.conns if p.fut is not None and p.deadline <= now]
            for p in late:
                p.timed_out()

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
