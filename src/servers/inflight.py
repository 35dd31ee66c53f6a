"""Each worker's current request and client, in the scoreboard: what mod_status's
ExtendedStatus rows show (the request line, the client), and since when.

A record per slot, after the phase area: the request line as it came (cut at LINE_BYTES,
as Apache cuts its `Request` at 64), the client's address and port, when the request
began (its first bytes reached the worker) and when its connection was accepted
(time.monotonic(), CLOCK_MONOTONIC: the sampler's clock), and how many requests the
worker has in progress. Only its own worker writes a record, in place: one
`struct.pack_into` of the fixed record (~0.5 us), nothing kept per request.

What "current" means:
- a worker serving one connection at a time (prefork, a worker thread, single): that
  connection; its request while one is in progress (`requests` 1), else the last one
  answered (`requests` 0), as mod_status keeps it; a new connection clears the line;
- an event loop holding many (many_accepts, cluster, reuseport, goroutines): the oldest
  request in progress, `requests` counting them all; none in progress: the last one
  answered, or the newest connection when it came after it;
- event's listener thread: the oldest readable parked connection waiting for a thread
  (its request begun, not yet read: no line), `requests` counting them; none: the
  connection it parked last.

Each write is one `pack_into` of the whole record, whose sequence number is its first
field and, again, its last: the fields land in order (x86 keeps stores in order, as
loads), so a reader that finds the two different caught a write half done and keeps its
last good reading. The sequence number also tells the reader when nothing changed (no
decoding then). One pack instead of a seqlock's three: 0.25 us a write against 0.5.
"""

from __future__ import annotations

import mmap
import struct
from typing import NamedTuple

LINE_BYTES = 64  # Apache's scoreboard keeps 64 bytes of the request line
ADDR_BYTES = 48  # an IPv6 address in text (39), with room for a scope
_SEQ = struct.Struct("=I")
# seq, requests, port, began, connected, client address, request line, seq again
RECORD = struct.Struct(f"=IIH2x4xdd{ADDR_BYTES}s{LINE_BYTES}sI4x")
RECORD_BYTES = RECORD.size
WORDS = RECORD_BYTES // 4  # the seq of slot i is uint32 word i * WORDS of the area
assert RECORD_BYTES % 8 == 0, "records must keep the area 8-aligned"


class Client(NamedTuple):
    """A connection's peer and when it was accepted (time.monotonic())."""

    address: str
    port: int
    since: float


def client_of(addr: object, since: float) -> Client | None:
    """The Client of an accept()'s or getpeername()'s address tuple (None for others)."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        return Client(str(addr[0]), int(addr[1]), since)
    return None


def first_line(data: bytes) -> tuple[bytes, bool]:
    """The request line at the start of `data`, cut at LINE_BYTES, and whether it is
    whole (its end came, or LINE_BYTES of it did: nothing more of it will be shown)."""
    cr = data.find(b"\r", 0, LINE_BYTES)
    if cr < 0:
        cr = data.find(b"\n", 0, LINE_BYTES)
    if cr >= 0:
        return data[:cr], True
    head = data[:LINE_BYTES]
    return head, len(head) >= LINE_BYTES


class RequestRecord:
    """The writer of one slot's record (its worker only). It keeps what it last wrote,
    so that each change rewrites the whole record from these in one call."""

    __slots__ = ("_addr", "_mm", "_off", "_seq", "began", "client", "line", "requests")

    def __init__(self, mm: mmap.mmap, offset: int) -> None:
        self._mm = mm
        self._off = offset
        self._seq = _SEQ.unpack_from(mm, offset)[0]
        self.client: Client | None = None
        self._addr = b""
        self.line = b""
        self.began = 0.0
        self.requests = 0

    def clear(self) -> None:
        """A new worker in the slot: nothing yet."""
        self.client, self._addr, self.line, self.began, self.requests = None, b"", b"", 0.0, 0
        self._write()

    def show(self, client: Client | None, line: bytes, began: float, requests: int) -> None:
        """Write the record: `client`'s request `line` that began at `began` (0: none
        yet on this connection), with `requests` in progress in the worker."""
        if client is not self.client:
            self.client = client
            self._addr = client.address.encode()[:ADDR_BYTES] if client else b""
        self.line, self.began, self.requests = line, began, requests
        self._write()

    def connected(self, client: Client | None) -> None:
        """A worker serving one connection at a time took a new one."""
        self.show(client, b"", 0.0, 0)

    def begin(self, line: bytes, began: float) -> None:
        """A request began on the current connection (its first bytes came at `began`)."""
        self.show(self.client, line, began, 1)

    def grew(self, line: bytes) -> None:
        """More of the request line came."""
        self.show(self.client, line, self.began, self.requests)

    def end(self) -> None:
        """The request was answered: it stays shown as the last one."""
        if self.requests:
            self.show(self.client, self.line, self.began, 0)

    def _write(self) -> None:
        seq = self._seq = (self._seq + 1) & 0xFFFFFFFF
        c = self.client
        RECORD.pack_into(
            self._mm,
            self._off,
            seq,
            self.requests,
            c.port if c else 0,
            self.began,
            c.since if c else 0.0,
            self._addr,
            self.line,
            seq,
        )


class Reading(NamedTuple):
    """A record as read: `line` and `address` as bytes (b"": none); times 0.0: none."""

    requests: int
    port: int
    began: float
    connected: float
    address: bytes
    line: bytes


def read(mm: mmap.mmap, offset: int, seq: int) -> Reading | None:
    """The record at `offset` if it is whole and still at sequence number `seq`; None
    when the worker was writing it, or has since (keep the last reading)."""
    first, requests, port, began, connected, address, line, last = RECORD.unpack_from(mm, offset)
    if first != seq or last != seq:
        return None
    return Reading(requests, port, began, connected, address.rstrip(b"\0"), line.rstrip(b"\0"))
