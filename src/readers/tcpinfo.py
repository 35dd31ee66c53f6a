"""What one server-side TCP connection has done, from its `struct tcp_info` (linux/tcp.h),
which sock_diag hands over for sockets of any process (INET_DIAG_INFO, readers.sockdiag):
bytes received, bytes sent, and how long ago data last went each way.

Why: a worker pinned by a connection looks the same from /proc whatever the client did,
but the fix differs: an idle keep-alive connection after a response wants a shorter
keep-alive timeout, a request that came in part and stopped wants a request timeout
(Apache's RequestReadTimeout, gunicorn's --timeout) or a proxy that buffers requests,
and a client that sent nothing since it connected wants the same. `TcpInfo.hold` says
which (snapshot.Hold). Kept per connection, so that a per-worker list of connections
("127.0.0.1:51234 · idle 4.2 s after a response") can be built on it.

The offsets were checked against getsockopt(TCP_INFO) on a socket pair (1,000 bytes in,
300 out: bytes_received 1000, bytes_acked and bytes_sent 300, last data 248 / 200 ms).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from values.snapshot import Hold

# tcpi_last_data_sent @44, tcpi_last_data_recv @52 (ms ago); tcpi_bytes_acked @120,
# tcpi_bytes_received @128 (Linux 4.1+); tcpi_bytes_sent @200 (Linux 4.19+)
_TIMES = struct.Struct("=I4xI")
_BYTES = struct.Struct("=QQ")
_SENT = struct.Struct("=Q")
MIN_SIZE = 136  # up to tcpi_bytes_received: older kernels' tcp_info is too short to judge


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """One connection as the server's socket saw it."""

    bytes_received: int  # request bytes that came in (tcpi_bytes_received)
    bytes_sent: int  # response bytes that went out (tcpi_bytes_sent, else bytes_acked)
    last_recv_ms: int  # since data last came in (since the connection opened: none yet)
    last_sent_ms: int  # since data last went out (likewise)

    @property
    def idle_s(self) -> float:
        """Seconds since data last moved either way."""
        return min(self.last_recv_ms, self.last_sent_ms) / 1000.0

    @property
    def hold(self) -> Hold:
        """What holds the worker that holds this connection (see the module docstring):
        a response went out and nothing came since -> KEEPALIVE; bytes came in with no
        response after them -> PARTIAL; nothing ever came -> SILENT."""
        if self.bytes_received == 0:
            return Hold.SILENT
        if self.bytes_sent and self.last_sent_ms <= self.last_recv_ms:
            return Hold.KEEPALIVE
        return Hold.PARTIAL


def parse(buf: bytes | bytearray | memoryview, off: int, length: int) -> TcpInfo | None:
    """The tcp_info of `length` bytes at `off` in `buf`; None when too short to judge."""
    if length < MIN_SIZE:
        return None
    sent_ms, recv_ms = _TIMES.unpack_from(buf, off + 44)
    acked, received = _BYTES.unpack_from(buf, off + 120)
    sent = _SENT.unpack_from(buf, off + 200)[0] if length >= 208 else acked
    return TcpInfo(received, sent, recv_ms, sent_ms)
