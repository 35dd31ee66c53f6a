"""The one TCP_INFO reader: the accept queue of a listening socket we hold; and its drops.

For a socket in LISTEN state the kernel reports the current accept-queue length in
`tcpi_unacked` and its limit (min(backlog, somaxconn)) in `tcpi_sacked`; `ss -ltn` shows the
same pair as Recv-Q / Send-Q, which the tests compare against.
"""

from __future__ import annotations

import socket
import struct

TCP_LISTEN = 10
_TCP_INFO = struct.Struct(
    "=8B6I"
)  # state..flags bytes, then rto ato snd_mss rcv_mss unacked sacked


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(queue length, limit) of a listening socket, from TCP_INFO; None if not LISTEN."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
    except OSError:
        return None
    if len(raw) < _TCP_INFO.size:
        return None
    f = _TCP_INFO.unpack_from(raw)
    if f[0] != TCP_LISTEN:
        return None
    return f[12], f[13]


SO_MEMINFO = 55  # (asm-generic/socket.h): u32 sk_meminfo[SK_MEMINFO_VARS]
SK_MEMINFO_DROPS = 8  # the socket's sk_drops
_MEMINFO = struct.Struct("=9I")


def listen_drops(sock: socket.socket) -> int | None:
    """Handshakes this listening socket dropped since it was made: its sk_drops, which the
    kernel counts with every ListenDrops it adds for this socket (an accept queue full
    when a handshake completes: ListenOverflows; a SYN refused). Per socket, where the
    /proc/net/netstat counters are the whole namespace's. None when unreadable."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
    except OSError:
        return None
    if len(raw) < _MEMINFO.size:
        return None
    return int(_MEMINFO.unpack_from(raw)[SK_MEMINFO_DROPS])
