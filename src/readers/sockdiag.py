"""TCP sockets of given local ports via netlink sock_diag, filtered in the kernel, and
which process owns each one.

Why: attach used to parse all of /proc/net/tcp{,6} every sample, so its cost grew with
every socket on the host (figures: bench/README.md). Here the kernel does the filtering:
the request carries a state mask (TIME-WAIT is skipped before any formatting) and an
inet_diag bytecode program that keeps only sockets whose local port is one of the
server's ports, so the reply holds just the server's sockets (bench/bench_sockdiag.py).

Hand-written with `socket.AF_NETLINK` + struct: psutil.net_connections parses
/proc/net/tcp (no filtering, no queue limit), pyroute2 has no inet_diag bytecode
filter, and no other library kept for the project speaks inet_diag. The request is
`inet_diag_req_v2` (linux/inet_diag.h) plus an INET_DIAG_REQ_BYTECODE attribute built
the way iproute2's `ss` builds `sport = :P or sport = :Q` (S_GE/S_LE pairs, joined by
JMP ops), which every kernel since 2.6 accepts.

Both families in one pass: the kernel walks its whole established-socket hash table for
every dump (262,144 buckets on a 24 GB machine, plus every TIME-WAIT socket), whatever
the filter, so one dump costs ~2.4 ms at 50k TIME-WAIT; a SOCK_DIAG_BY_FAMILY request
names one family, so IPv4 + IPv6 walked it twice (4.9 ms). The older TCPDIAG_GETSOCK
request (same reply format, same bytecode) dumps with family AF_UNSPEC, one walk for
both; it is used when the kernel takes it, with the per-family requests as fallback.
LISTEN-only dumps walk the listening hash alone (~0.03 ms).

Which process owns each socket: readers.sockowners. The per-sample dump of a server's
connections (half-open ones, tcp_info, the monitor's own apart): readers.sockscan.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .netns import NetNs

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18  # the older request type: its dumps take both families in one pass
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_SKMEMINFO = 7  # an attribute asked for by the bit 1 << (7 - 1) of idiag_ext
_EXT_MEMINFO = 1 << (INET_DIAG_SKMEMINFO - 1)
_SK_MEMINFO_DROPS = 8  # index of sk_drops in the u32 array

# TCP states (include/net/tcp_states.h)
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_SYN_RECV = 3
TCP_FIN_WAIT1 = 4
TCP_FIN_WAIT2 = 5
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_LISTEN = 10
TCP_CLOSING = 11
TCP_NEW_SYN_RECV = 12

STATE_NAMES = {
    TCP_ESTABLISHED: "ESTAB",
    TCP_SYN_SENT: "SYN-SENT",
    TCP_SYN_RECV: "SYN-RECV",
    TCP_FIN_WAIT1: "FIN-WAIT-1",
    TCP_FIN_WAIT2: "FIN-WAIT-2",
    TCP_TIME_WAIT: "TIME-WAIT",
    TCP_CLOSE: "UNCONN",
    TCP_CLOSE_WAIT: "CLOSE-WAIT",
    TCP_LAST_ACK: "LAST-ACK",
    TCP_LISTEN: "LISTEN",
    TCP_CLOSING: "CLOSING",
    TCP_NEW_SYN_RECV: "SYN-RECV",
}

ALL_STATES = (1 << 13) - 1
LISTEN = 1 << TCP_LISTEN
# what `ss -t` shows by default ("connected"): every state but LISTEN, CLOSE, TIME-WAIT and
# SYN-RECV; these are the connections a process holds
CONNECTED = ALL_STATES & ~(
    (1 << TCP_LISTEN)
    | (1 << TCP_CLOSE)
    | (1 << TCP_TIME_WAIT)
    | (1 << TCP_SYN_RECV)
    | (1 << TCP_NEW_SYN_RECV)
)
SYN_RECV = (1 << TCP_SYN_RECV) | (1 << TCP_NEW_SYN_RECV)

# inet_diag_bc_op codes
_BC_NOP = 0
_BC_JMP = 1
_BC_S_GE = 2
_BC_S_LE = 3

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_REQ_V2 = struct.Struct("=BBBxI48s")  # family, protocol, ext, pad, states, inet_diag_sockid
_REQ_COMPAT = struct.Struct("=BBBB48sII")  # family, src_len, dst_len, ext, sockid, states, dbs
_BC_OP = struct.Struct("=BBH")  # code, yes, no
# inet_diag_msg: family state timer retrans, sockid (sport dport src[16] dst[16] if
# cookie[2]), expires rqueue wqueue uid inode
_DIAG_MSG = struct.Struct("=BBBB2H16s16sI2IIIIII")
_DIAG_SIZE = _DIAG_MSG.size  # 72
_U32 = struct.Struct("=I")  # idiag_inode, at offset 68 of inet_diag_msg


class SockDiagError(OSError):
    """sock_diag could not be used (no netlink in this kernel/sandbox, or the request was
    refused); the message says which."""


@dataclass(frozen=True, slots=True)
class DiagSocket:
    """One TCP socket as sock_diag reports it. For a LISTEN socket `rqueue` is the accept
    queue's length and `wqueue` its limit (as `ss -ltn` Recv-Q / Send-Q); otherwise they
    are the bytes in the receive / send queues. `inode` is 0 for sockets no file holds
    (request sockets, orphans)."""

    family: int
    state: int
    local_port: int
    remote_port: int
    rqueue: int
    wqueue: int
    inode: int
    cookie: int
    src: bytes  # raw, network order (4 or 16 bytes used)
    dst: bytes
    drops: int | None = None  # its sk_drops (SKMEMINFO), for the listener dump; else None

    @property
    def local_address(self) -> str:
        return _ntop(self.family, self.src)

    @property
    def remote_address(self) -> str:
        return _ntop(self.family, self.dst)

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, str(self.state))


def _ntop(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw[:4] if family == socket.AF_INET else raw)


def port_filter(ports: Iterable[int]) -> bytes:
    """inet_diag bytecode accepting sockets whose local port is one of `ports`.

    One block per port: `S_GE p` then `S_LE p` (each op followed by a NOP op carrying the
    port in its `no` field); a failed comparison jumps 4 bytes past its block's end, i.e.
    over the JMP to the next block (past the program's end for the last block: reject);
    a passed block falls onto a JMP that leaps to the program's end (accept). This is the
    shape the kernel's bytecode audit wants: the `yes` path runs straight through."""
    ports = sorted(set(ports))
    if not ports:
        raise ValueError("no ports to filter on")
    for p in ports:
        if not 0 < p < 65536:
            raise ValueError(f"not a TCP port: {p}")
    block = 16
    out = bytearray()
    for i, p in enumerate(ports):
        out += _BC_OP.pack(_BC_S_GE, 8, block + 4) + _BC_OP.pack(_BC_NOP, 0, p)
        out += _BC_OP.pack(_BC_S_LE, 8, 8 + 4) + _BC_OP.pack(_BC_NOP, 0, p)
        if i < len(ports) - 1:
            rest = (len(ports) - 1 - i) * (block + 4) - 4  # bytes after this JMP
            out += _BC_OP.pack(_BC_JMP, 4, rest + 4)
    return bytes(out)


class SockDiag:
    """One netlink socket, kept open between dumps (about 20 us less per dump). `netns`:
    the network namespace whose sockets it dumps (made there: readers.netns); ours when
    None."""

    def __init__(self, netns: NetNs | None = None) -> None:
        def make() -> socket.socket:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)

        try:
            self._nl = make() if netns is None else netns.run(make)
        except OSError as e:
            raise SockDiagError(f"netlink sock_diag unavailable: {e.strerror or e}") from None
        self._nl.settimeout(2.0)
        self._buf = bytearray(1 << 16)
        self._seq = 0
        self._filters: dict[tuple[int, ...], bytes] = {}
        self.compat = True  # TCPDIAG_GETSOCK works here (cleared on the first refusal)

    def close(self) -> None:
        self._nl.close()

    def __enter__(self) -> SockDiag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dump(
        self,
        states: int,
        ports: Iterable[int] | None = None,
        families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6),
        meminfo: bool = False,
    ) -> list[DiagSocket]:
        """Every TCP socket in `states` (a bit mask of 1 << TCP_*) whose local port is in
        `ports` (all ports when None), over IPv4 and IPv6; with `meminfo`, each with its
        drops (the kernel's SKMEMINFO attribute)."""
        bc = b""
        if ports is not None:
            key = tuple(sorted(set(ports)))
            if not key:
                return []
            bc = self._filters.get(key) or self._filters.setdefault(key, port_filter(key))
        out: list[DiagSocket] = []
        if self.compat and len(set(families)) == 2:
            try:
                self._dump_one(socket.AF_UNSPEC, states, bc, out, meminfo=meminfo)
                return out
            except SockDiagError:
                self.compat = False
                out.clear()
        for family in families:
            self._dump_one(family, states, bc, out, meminfo=meminfo)
        return out

    def filter_for(self, ports: Iterable[int]) -> bytes:
        """The bytecode keeping `ports` (cached per set of ports); b"" for none."""
        key = tuple(sorted(set(ports)))
        if not key:
            return b""
        return self._filters.get(key) or self._filters.setdefault(key, port_filter(key))

    def recv_into(self) -> tuple[int, bytearray]:
        """One read of the reply: its length and the buffer holding it."""
        return self._nl.recv_into(self._buf), self._buf

    def send(self, family: int, states: int, bc: bytes, ext: int = 0) -> int:
        """Send one dump request (AF_UNSPEC: the older one-walk request) with the reply
        extensions `ext` (bits 1 << (INET_DIAG_* - 1)); its sequence number."""
        self._seq += 1
        if family == socket.AF_UNSPEC:
            req = _REQ_COMPAT.pack(0, 0, 0, ext, b"\0" * 48, states, 0)
            mtype_req = TCPDIAG_GETSOCK
        else:
            req = _REQ_V2.pack(family, socket.IPPROTO_TCP, ext, states, b"\0" * 48)
            mtype_req = SOCK_DIAG_BY_FAMILY
        if bc:
            req += _NLATTR.pack(_NLATTR.size + len(bc), INET_DIAG_REQ_BYTECODE) + bc
        flags = NLM_F_REQUEST | NLM_F_DUMP
        hdr = _NLMSGHDR.pack(_NLMSGHDR.size + len(req), mtype_req, flags, self._seq, 0)
        self._nl.send(hdr + req)
        return self._seq

    def _dump_one(
        self,
        family: int,
        states: int,
        bc: bytes,
        out: list,
        inode_only: bool = False,
        meminfo: bool = False,
    ) -> None:
        # one function on purpose (~60 lines): build the request, then the receive loop,
        # whose per-message body is the hot path (thousands of sockets a dump) and keeps
        # its struct methods in locals
        seq = self.send(family, states, bc, _EXT_MEMINFO if meminfo else 0)
        mtype_req = TCPDIAG_GETSOCK if family == socket.AF_UNSPEC else SOCK_DIAG_BY_FAMILY
        nl = self._nl
        buf = self._buf
        unpack = _DIAG_MSG.unpack_from
        ino_at = _U32.unpack_from
        hsize = _NLMSGHDR.size
        try:
            while True:
                n = nl.recv_into(buf)
                off = 0
                while off + hsize <= n:
                    length, mtype, _, mseq, _ = _NLMSGHDR.unpack_from(buf, off)
                    if length < hsize:
                        return
                    if mseq != seq:  # a stale reply from an interrupted dump
                        off += (length + 3) & ~3
                        continue
                    if mtype == NLMSG_DONE:
                        return
                    if mtype == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", buf, off + hsize)
                        if err == 0:
                            return
                        raise SockDiagError(-err, f"sock_diag refused: {os.strerror(-err)}")
                    if mtype == mtype_req and inode_only:
                        out.append(ino_at(buf, off + hsize + 68)[0])
                    elif mtype == mtype_req and length >= hsize + _DIAG_SIZE:
                        f = unpack(buf, off + hsize)
                        out.append(
                            DiagSocket(
                                f[0],
                                f[1],
                                (f[4] >> 8) | ((f[4] & 0xFF) << 8),
                                (f[5] >> 8) | ((f[5] & 0xFF) << 8),
                                f[12],
                                f[13],
                                f[15],
                                f[9] | (f[10] << 32),
                                f[6],
                                f[7],
                                _drops(buf, off + hsize + _DIAG_SIZE, off + length)
                                if meminfo
                                else None,
                            )
                        )
                    off += (length + 3) & ~3
        except TimeoutError:
            raise SockDiagError("sock_diag: no reply from the kernel within 2 s") from None

    def listeners(self, ports: Iterable[int] | None = None) -> list[DiagSocket]:
        """The listening sockets on `ports`, each with its drops (a few sockets a dump)."""
        return self.dump(LISTEN, ports, meminfo=True)

    def connections(self, ports: Iterable[int], states: int = CONNECTED) -> list[DiagSocket]:
        return self.dump(states, ports)

    def inodes(self, ports: Iterable[int], states: int = CONNECTED) -> list[int]:
        """Just the inodes of `dump(states, ports)` (0 for sockets no file holds yet):
        the per-sample fast path, about 2 us less per socket than building DiagSockets."""
        key = tuple(sorted(set(ports)))
        if not key:
            return []
        bc = self._filters.get(key) or self._filters.setdefault(key, port_filter(key))
        out: list[int] = []
        if self.compat:
            try:
                self._dump_one(socket.AF_UNSPEC, states, bc, out, True)
                return out
            except SockDiagError:
                self.compat = False
                out.clear()
        for family in (socket.AF_INET, socket.AF_INET6):
            self._dump_one(family, states, bc, out, True)
        return out


def _drops(buf: bytearray, off: int, end: int) -> int | None:
    """sk_drops from the SKMEMINFO attribute among a message's attributes (off..end)."""
    while off + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(buf, off)
        if length < _NLATTR.size:
            return None
        if kind == INET_DIAG_SKMEMINFO and length >= _NLATTR.size + 4 * (_SK_MEMINFO_DROPS + 1):
            return int(_U32.unpack_from(buf, off + _NLATTR.size + 4 * _SK_MEMINFO_DROPS)[0])
        off += (length + 3) & ~3
    return None
