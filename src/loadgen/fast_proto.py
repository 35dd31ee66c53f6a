"""The fast engine's connection (loadgen.engine_fast): an asyncio Protocol that reads
HTTP/1.1 responses with one `find` for the end of a head, and skips parsing a head equal
to the previous one."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .engine import RequestError

if TYPE_CHECKING:
    from .engine_fast import FastClient, FastEngine

_MAX_HEAD = 64 * 1024
_monotonic = time.monotonic


def _http_start(buf: bytes) -> bool:
    """`buf` is, or may grow into, the start of an HTTP/1.x response."""
    return buf[:7] == b"HTTP/1." or b"HTTP/1.".startswith(buf)


class FastProtocol(asyncio.Protocol):
    """One connection of the fast engine: it parses each response as its bytes come and
    completes the request's future (or, in a chained closed loop, calls its client)."""

    __slots__ = (
        "buf",
        "chain",
        "client",
        "close_after",
        "closed",
        "deadline",
        "engine",
        "fut",
        "got",
        "remaining",
        "reused",
        "status",
        "t_first",
        "t_last",
        "transport",
    )

    def __init__(self, engine: FastEngine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.fut: asyncio.Future[int] | None = None
        self.buf = b""
        self.remaining = -1  # -1: reading the head; >= 0: body bytes to come; -2: until EOF
        self.status = 0
        self.close_after = False
        self.closed = False
        self.got = False  # any byte of the current response
        self.deadline = 0.0
        self.t_first = 0.0  # monotonic time of the current response's first byte
        self.t_last = 0.0  # ... and of its last byte so far
        self.client: FastClient | None = None  # who sent the current request
        self.reused = False  # ... on this connection after an earlier request
        self.chain = False  # requests chained by callbacks (FastClient.burst)

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.engine.rec.open += 1
        self.engine.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.engine.rec.open -= 1
        self.engine.conns.discard(self)
        fut = self.fut
        if fut is not None:
            self.fut = None
            client = self.client
            if client is not None and client.proto is self:
                client.proto = None
            if self.chain:
                self.chain = False
                if client is not None:
                    client.chain_lost(self, fut)
            elif not fut.done():
                if self.remaining == -2 and exc is None:
                    self.t_last = _monotonic()  # the close delimits the body
                    if client is not None:
                        client.t_first, client.t_last = self.t_first, self.t_last
                    fut.set_result(self.status)  # body delimited by the close
                elif self.reused and not self.got and client is not None:
                    # the server closed an idle keep-alive connection as we sent: retry
                    # once on a new one (the time until now is the request's wait)
                    client.retry(fut)
                else:
                    fut.set_exception(RequestError("reset", empty=not self.got))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def data_received(self, data: bytes) -> None:
        # one function on purpose: every response's bytes go through it, inline
        fut = self.fut
        if fut is None:  # bytes nobody asked for: an HTTP answer (a 408 before a close)
            buf = self.buf + data  # is dropped; else the server speaks first (SSH, SMTP):
            if not _http_start(buf):  # the next request reads them and fails
                self.buf = buf[: _MAX_HEAD + 1]
            return
        self.t_last = now = _monotonic()
        if not self.got:
            self.got = True
            self.t_first = now
        rem = self.remaining
        if rem > 0:
            rem -= len(data)
            if rem > 0:
                self.remaining = rem
                return
            self._done(fut)
            return
        if rem == -2:
            return
        buf = self.buf + data if self.buf else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            # a head too long, or bytes that cannot begin one (a port that is not HTTP:
            # SSH's banner waited forever for a blank line)
            if len(buf) > _MAX_HEAD or not _http_start(buf):
                self._fail(fut, "bad_response")
            else:
                self.buf = buf
            return
        self.buf = b""
        head = buf[:end]
        e = self.engine
        if head == e.last_head:  # the same head as the last response: parsed already
            self.status, length, self.close_after = e.last_parsed
            body = len(buf) - end - 4
            if body >= length:
                self._done(fut)
            else:
                self.remaining = length - body
            return
        if head[:7] != b"HTTP/1." or head[12:13] not in (b" ", b"\r", b""):
            self._fail(fut, "bad_response")
            return
        try:
            status = int(head[9:12])
        except ValueError:
            self._fail(fut, "bad_response")
            return
        self.status = status
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.find(b"\r\n", i + 17)
            try:
                length = int(lower[i + 17 : j if j >= 0 else len(lower)])
            except ValueError:
                self._fail(fut, "bad_response")
                return
        elif lower.find(b"\r\ntransfer-encoding:") >= 0:
            self._fail(fut, "bad_response")  # chunked: the httpx engine's job
            return
        elif status in (204, 304) or status < 200:
            length = 0
        else:
            self.remaining = -2  # delimited by the close
            self.close_after = True
            return
        self.close_after = lower.find(b"\r\nconnection: close") >= 0
        e.last_head = head
        e.last_parsed = (status, length, self.close_after)
        body = len(buf) - end - 4
        if body >= length:
            self._done(fut)
        else:
            self.remaining = length - body

    # -- helpers -------------------------------------------------------------------------
    def _done(self, fut: asyncio.Future[int]) -> None:
        self.fut = None
        self.remaining = -1
        client = self.client
        if self.chain:
            client.chain_next(self, fut)  # type: ignore[union-attr]
            return
        if client is not None:
            client.t_first = self.t_first
            client.t_last = self.t_last
            if self.close_after or not self.engine.keepalive:
                self.transport.close()  # type: ignore[union-attr]
                client.proto = None
        fut.set_result(self.status)

    def _fail(self, fut: asyncio.Future[int], kind: str) -> None:
        self.fut = None
        self.remaining = -1
        client = self.client
        if client is not None and client.proto is self:
            client.proto = None
        if self.chain:
            self.chain = False
            client.chain_fail(fut, kind)  # type: ignore[union-attr]
        else:
            fut.set_exception(RequestError(kind))
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self) -> None:
        fut = self.fut
        if fut is not None:
            self._fail(fut, "read_timeout")
