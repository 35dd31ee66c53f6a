"""What a worker is doing for whom: its current request and client (`Current`), and the
connections it holds as their sockets show them (`Peers`). Immutable values, carried by
`WorkerSample.current` and `WorkerSample.peers`, with their one-line descriptions.

Times are time.monotonic() seconds (CLOCK_MONOTONIC, the clock of `Snapshot.time`): a
reader takes an age as `snapshot.time - began`, so a request's age keeps growing from one
snapshot to the next, in a replay too, and the same `began` from one snapshot to the next
is the same request. Unknown is None, never 0 nor "".

Where they come from:
- the lab's models: each worker's scoreboard slot (servers.inflight), written by the
  worker itself: the request line as it came (cut at 64 bytes, as Apache's `Request`),
  the client's address and port, when the request began and when its connection was
  accepted. A worker holding several connections (an event loop) shows its oldest
  request in progress, `requests` counting them all;
- Apache (mod_status with ExtendedStatus): its per-slot table, Request, Client (the
  address only: Apache keeps no port) and SS (seconds since the slot last began or
  ended a request, whole seconds), read when a worker is free (readers.statuspoll);
- any attached server, from outside: each connection's peer, TCP state, queues and
  tcp_info (bytes each way, when data last moved), read by sock_diag at most every
  0.5 s, the PEERS_LISTED oldest per worker plus a count (sources.realattach).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PEERS_LISTED = 8  # connections listed per worker (the oldest); `Peers.total` counts all


class Via(StrEnum):
    """Where a worker's current request was read."""

    SCOREBOARD = "scoreboard"  # the lab's own slot, written by the worker
    MOD_STATUS = "mod_status"  # Apache's ExtendedStatus row


@dataclass(frozen=True, slots=True)
class Current:
    """A worker's current request and client: the request in progress or, with none in
    progress (`requests` 0), the last one it answered, as mod_status keeps it."""

    via: Via
    requests: int | None = None  # requests in progress in the worker: 0 (the one shown was
    # answered), 1, or more (an event loop: the one shown is the oldest); None unknown
    request: str | None = None  # its request line as it came (scoreboard: cut at 64
    # bytes; mod_status: its Request); None: not a byte of one yet, or unknown
    client: str | None = None  # "127.0.0.1:51234", "[::1]:51234"; the address alone when
    # the port is unknown (mod_status keeps none); None unknown
    began: float | None = None  # when the request shown began (monotonic): the server had
    # its first bytes (scoreboard: the accept that found them, a hand-off's kernel arrival
    # time, else the worker's read), or, for a request in progress, the SS of mod_status
    # (whole seconds); None: no request yet, or unknown
    connected: float | None = None  # when the worker took its connection (monotonic,
    # scoreboard: its accept, or the hand-off to it: after `began` when the master that
    # accepted it had its bytes)


@dataclass(frozen=True, slots=True)
class Peer:
    """One connection a worker holds, as the server's socket shows it (sock_diag, its
    tcp_info): what `ss -tni` prints for it."""

    client: str  # the peer, "127.0.0.1:51234" or "[::1]:51234"
    tcp_state: str  # as ss names it: "ESTAB", "CLOSE-WAIT", ...
    recv_q: int = 0  # bytes in, not read by the server yet (ss Recv-Q)
    send_q: int = 0  # bytes out, not acknowledged by the client yet (ss Send-Q)
    bytes_received: int | None = None  # since it opened (tcpi_bytes_received); None:
    # tcp_info not read
    bytes_sent: int | None = None  # since it opened (tcpi_bytes_sent, else bytes_acked)
    last_recv: float | None = None  # when data last came in (monotonic); with none in yet,
    # when it opened (the kernel counts from the handshake)
    last_sent: float | None = None  # when data last went out (likewise)
    opened: float | None = None  # when it opened (monotonic): from tcp_info while nothing
    # came in, else when sock_diag first saw it (a sample late at most); None: it was open
    # before the monitor first looked


@dataclass(frozen=True, slots=True)
class Peers:
    """The connections a worker holds: the oldest PEERS_LISTED, oldest first (the opened
    before the monitor looked first), and how many it holds in all (a connection newer
    than the last tcp_info read is counted, not listed)."""

    listed: tuple[Peer, ...] = ()
    total: int = 0


def client_text(address: str, port: int | None) -> str:
    """`127.0.0.1:51234`, `[::1]:51234`, or the address alone when the port is unknown."""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def seconds(s: float) -> str:
    """An age: `0.4 s`, `12 s`, `4 min 10 s`, `2 h 5 min`."""
    s = max(0.0, s)
    if s < 10:
        return f"{s:.1f} s"
    if s < 600:
        return f"{s:.0f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60)} s"
    if s < 7200:
        return f"{int(s // 60)} min"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def describe_peer(p: Peer, now: float) -> str:
    """What the connection has done, in words: `idle 4.2 s after a response`,
    `mid-request, 17 bytes in, 12 s ago`, `silent since connect, 30 s`; with the bytes
    the server has not read yet, and its TCP state when not established."""
    state = "" if p.tcp_state == "ESTAB" else f"{p.tcp_state}, "
    unread = f", {p.recv_q} B not read by the server" if p.recv_q else ""
    received, sent = p.bytes_received, p.bytes_sent
    if received is None or sent is None or p.last_recv is None or p.last_sent is None:
        return f"{state}tcp_info not read{unread}"
    if received == 0:
        return f"{state}silent since connect, {seconds(now - p.last_recv)}{unread}"
    if sent and p.last_sent >= p.last_recv:
        return f"{state}idle {seconds(now - p.last_sent)} after a response{unread}"
    return f"{state}mid-request, {received} bytes in, {seconds(now - p.last_recv)} ago{unread}"


def describe_current(c: Current, now: float) -> list[str]:
    """Two lines on a worker's current request: what and since when, then for whom:
    `request in progress: GET /slow HTTP/1.1, began 12 s ago`,
    `client: 127.0.0.1:51234, connected 12 s ago`."""
    line = repr(c.request)[1:-1] if c.request else None  # control bytes shown escaped
    age = f", began {seconds(now - c.began)} ago" if c.began is not None else ""
    n = c.requests
    if n is None:
        what = f"request: {line or 'unknown'}{age}"
    elif n == 0:
        what = f"last request (answered): {line}{age}" if line else "no request yet"
    else:
        head = "request in progress" if n == 1 else f"oldest of {n} requests in progress"
        what = f"{head}: {line or 'its line not read yet'}{age}"
    since = f", connected {seconds(now - c.connected)} ago" if c.connected is not None else ""
    # the scoreboard knows every client its worker took: none there is none yet
    none = "none yet" if c.via == Via.SCOREBOARD and c.connected is None else "unknown"
    return [what, f"client: {c.client or none}{since}"]
