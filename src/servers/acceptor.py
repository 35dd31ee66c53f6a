"""The one accept() of every model: a new connection, or None, and after a failure a
report once a second and a back-off.

Why: under `ulimit -n 64` with 200 clients an accept() that fails with EMFILE fails
again at once for as long as the fd table is full; retried in a loop it burned a core
and wrote 71,988 tracebacks (29 MB) in 8 s. So a failing accept() (EMFILE, ENFILE,
ENOBUFS, ...) is counted and said once a second (`guard.EverySecond`), and the caller's
`pause` keeps it from accepting for ACCEPT_BACKOFF: a sleep for a thread that blocks in
accept(), removing the listener from the loop for a while for an event loop. The
connection stays in the accept queue meanwhile, where the kernel counts it.

Queue wait, measured by the kernel: the root sets SO_TIMESTAMPNS on every
listening socket (`stamp_arrivals`); accepted sockets inherit it, so right after accept()
one non-blocking `recvmsg(MSG_PEEK | MSG_DONTWAIT)` returns, in an SCM_TIMESTAMPNS
message, the CLOCK_REALTIME at which the kernel received the first request bytes; the
queue wait is accept time minus that (0 when no byte had arrived yet: the connection did
not wait for us, its client had not spoken). Why this and not TCP_INFO: TCP_INFO's
tcpi_last_data_recv is in jiffies (1-4 ms steps, per the kernel's HZ) and counts from the
LAST segment received, so a request sent in two segments or a second request already
queued reads as a shorter wait; the timestamp is nanoseconds and is the first segment's.
The peek is once per connection, not per request, so its extra cost over TCP_INFO (about
a microsecond: bench/README.md) buys the precision. With the accounting off
(`serve --no-phases`) the option is not set and the peek not made.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from . import guard
from .inflight import Client, client_of

ACCEPT_BACKOFF = 0.1  # seconds without accept() after EMFILE/ENFILE and the like

# nothing to accept now (a non-blocking listener), a signal, or a client that reset
# before we took its connection: none of them is a failure, try again
_NOTHING = (BlockingIOError, InterruptedError, ConnectionAbortedError)


# not in Python's socket module; the same value on every Linux architecture Python runs on
# but a few (parisc, sparc, alpha: not supported here)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANC = socket.CMSG_SPACE(16)  # one struct timespec
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
_TIMESPEC = struct.Struct("=qq")


def stamp_arrivals(listener: socket.socket) -> None:
    """Have the kernel timestamp the segments of the connections `listener` accepts."""
    listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def arrival_ns(sock: socket.socket) -> int:
    """CLOCK_REALTIME ns at which the first unread bytes of `sock` arrived; 0 when no byte
    is there yet (or the client already closed), -1 when the kernel gave no timestamp."""
    try:
        data, anc, _flags, _addr = sock.recvmsg(1, _ANC, _PEEK)
    except BlockingIOError:
        return 0
    except OSError:
        return -1
    if not data:
        return 0
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(raw)
            return sec * 1_000_000_000 + nsec if sec else -1
    return -1


def arrived_mono_ns(sock: socket.socket) -> int:
    """The time.monotonic_ns() at which the first unread bytes of `sock` arrived (kernel
    timestamp, moved to the monotonic clock); 0 if none yet or unknown. For a connection
    handed to another thread or process whose bytes came after the accept: they were in
    the server's hands from their arrival, however late the worker reads them."""
    real, mono = time.time_ns(), time.monotonic_ns()
    arrived = arrival_ns(sock)
    return mono - max(0, real - arrived) if arrived > 0 else 0


class Acceptor:
    """accept() on `listener` for `who` (the name in its failure reports).

    After each accept on a listener with SO_TIMESTAMPNS (`timed`), `queue_us` is the new
    connection's queue wait in microseconds (-1: unknown) and `since_ns` the
    time.monotonic_ns() at which the server had its first request bytes: the accept, when
    they were already there, else 0 (the first read will tell). A hand-off passes both on
    to the worker that serves the connection, which records them in its own slot.
    After every accept, `client` is the connection's peer and accept time (servers.inflight).
    """

    def __init__(
        self,
        listener: socket.socket,
        who: str,
        *,
        pause: Callable[[float], object] = time.sleep,
    ) -> None:
        self.listener = listener
        self.pause = pause
        self._failed = guard.EverySecond(who)
        self.timed = listener.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS) != 0
        self.queue_us = -1
        self.since_ns = 0
        self.client: Client | None = None

    def accept(self) -> socket.socket | None:
        """A new connection; None if there is none now or accept() failed (said, paused)."""
        try:
            sock, addr = self.listener.accept()
            self.client = client_of(addr, time.monotonic())
            if self.timed:  # the connection's queue wait, one peek
                now_ns = self.since_ns = time.monotonic_ns()
                real_ns = time.time_ns()
                arrived = arrival_ns(sock)
                if arrived > 0:
                    self.queue_us = max(0, (real_ns - arrived) // 1000)
                else:
                    self.queue_us = arrived  # 0: no bytes yet, -1: unknown
                    self.since_ns = 0 if arrived == 0 else now_ns
            return sock
        except _NOTHING:
            return None
        except OSError as e:
            self._failed.hit(f"accept failed: {e}")
            self.pause(ACCEPT_BACKOFF)
            return None
