"""The per-sample dump of a server's connections (`scan`), in the walk sock_diag makes anyway:
- the connected sockets' inodes (0: no file yet: waiting in an accept queue, or an
  orphan), for readers.sockowners;
- half-open connections (SYN_RECV) per local port, as `ss -tn state syn-recv` counts
  them (Apache's listener defers accept until data comes, so a silent client stays
  half-open);
- with `info`, each connection's tcp_info (INET_DIAG_INFO: what it did, readers.tcpinfo)
  and its peer, TCP state and queues (`Conn`), per inode: what holds a worker, and the
  list of its connections (sources.realattach);
- sockets whose peer is one of `own` (the monitor's own client sockets, by 4-tuple) apart:
  never among the inodes, and counted when they wait in an accept queue.
Hand-written over readers.sockdiag's netlink socket, for the same reason as it.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import tcpinfo

# the wire format is sockdiag's (its private structs: one package, one format)
from .sockdiag import (
    _DIAG_SIZE,
    _NLATTR,
    _NLMSGHDR,
    CONNECTED,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOCK_DIAG_BY_FAMILY,
    SYN_RECV,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_NEW_SYN_RECV,
    TCP_SYN_RECV,
    TCPDIAG_GETSOCK,
    SockDiag,
    SockDiagError,
    _ntop,
)
from .tcpinfo import TcpInfo

INET_DIAG_INFO = 2  # the reply attribute carrying struct tcp_info; asked for by ext bit 1
_IN_QUEUE = {TCP_ESTABLISHED, TCP_CLOSE_WAIT}  # states of a child waiting to be accepted
_HALF_OPEN = {TCP_SYN_RECV, TCP_NEW_SYN_RECV}
_SCAN = struct.Struct("=xB2x2H16s16s28xI")  # state, sport, dport, src, dst, ..., inode
_QUEUES = struct.Struct("=II")  # idiag_rqueue, idiag_wqueue, at offset 56 of inet_diag_msg
_WQUEUE = struct.Struct("=I").unpack_from  # idiag_wqueue alone, at offset 60


Endpoint = tuple[str, int]  # (address as inet_ntop writes it, port)
# a connection as the dump showed it: TCP state, address family, peer address (16 raw
# bytes, formatted only for the connections a worker lists), peer port, Recv-Q, Send-Q
Conn = tuple[int, int, bytes, int, int, int]


@dataclass(slots=True)
class Scan:
    """One dump of a server's connections (`scan`), the per-sample reading."""

    inodes: list[int] = field(default_factory=list)  # connected sockets, 0: no file yet
    # (waiting in an accept queue, or an orphan); the monitor's own are left out
    syn_recv: dict[int, int] = field(default_factory=dict)  # half-open, per local port
    info: dict[int, TcpInfo] = field(default_factory=dict)  # per inode, when asked for
    conns: dict[int, Conn] = field(default_factory=dict)  # per inode, with `info`
    own_seen: set[Endpoint] = field(default_factory=set)  # `own` peers with a socket here
    own_queued: dict[int, int] = field(default_factory=dict)  # per local port: sockets
    # of those peers waiting in an accept queue (counted in the listener's Recv-Q)
    unacked: int = 0  # connections with data sent and not yet acknowledged (Send-Q > 0)


def scan(
    diag: SockDiag,
    ports: Iterable[int],
    *,
    own: Iterable[Endpoint] = (),
    info: bool = False,
) -> Scan:
    """The connected sockets of `ports` (inodes, as `inodes`) and their half-open
    ones (counted per port, as `ss -tn state syn-recv`), in one walk; sockets whose
    peer is one of `own` (the monitor's own client sockets) apart, never among the
    inodes; with `info`, each connection's tcp_info (INET_DIAG_INFO), per inode."""
    out = Scan()
    bc = diag.filter_for(ports)
    if not bc:
        return out
    mine: dict[int, set[str]] = {}
    for addr, port in own:
        mine.setdefault(port, set()).add(addr)
    states = CONNECTED | SYN_RECV
    if diag.compat:
        try:
            _scan_one(diag, socket.AF_UNSPEC, states, bc, out, mine, info)
            return out
        except SockDiagError:
            diag.compat = False
            out = Scan()
    for family in (socket.AF_INET, socket.AF_INET6):
        _scan_one(diag, family, states, bc, out, mine, info)
    return out


def _scan_one(
    diag: SockDiag,
    family: int,
    states: int,
    bc: bytes,
    out: Scan,
    mine: dict[int, set[str]],
    info: bool,
) -> None:
    # the loop of SockDiag._dump_one with the scan's per-message body (the hot path: a
    # message per connection of the server, so the struct methods stay in locals)
    # one function on purpose: a message per connection, the struct methods in locals
    seq = diag.send(family, states, bc, 1 << (INET_DIAG_INFO - 1) if info else 0)
    mtype_req = TCPDIAG_GETSOCK if family == socket.AF_UNSPEC else SOCK_DIAG_BY_FAMILY
    hsize = _NLMSGHDR.size
    head = _SCAN.unpack_from
    attr = _NLATTR.unpack_from
    inodes, syn, infos, conns = out.inodes, out.syn_recv, out.info, out.conns
    queues, wqueue = _QUEUES.unpack_from, _WQUEUE
    try:
        while True:
            n, buf = diag.recv_into()
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
                if mtype == mtype_req and length >= hsize + _DIAG_SIZE:
                    state, sport, dport, _, dst, ino = head(buf, off + hsize)
                    sport = (sport >> 8) | ((sport & 0xFF) << 8)
                    if state in _HALF_OPEN:
                        syn[sport] = syn.get(sport, 0) + 1
                        off += (length + 3) & ~3
                        continue
                    dport = (dport >> 8) | ((dport & 0xFF) << 8)
                    if mine:
                        peer = _ntop(buf[off + hsize], dst) if dport in mine else ""
                        if peer in mine.get(dport, ()):
                            out.own_seen.add((peer, dport))
                            if not ino and state in _IN_QUEUE:
                                out.own_queued[sport] = out.own_queued.get(sport, 0) + 1
                            off += (length + 3) & ~3
                            continue
                    inodes.append(ino)
                    if wqueue(buf, off + hsize + 60)[0]:
                        out.unacked += 1
                    if info and ino:
                        rq, wq = queues(buf, off + hsize + 56)
                        conns[ino] = (state, buf[off + hsize], dst, dport, rq, wq)
                        a = off + hsize + _DIAG_SIZE
                        while a + 4 <= off + length:
                            alen, atype = attr(buf, a)
                            if alen < 4:
                                break
                            if atype == INET_DIAG_INFO:
                                got = tcpinfo.parse(buf, a + 4, alen - 4)
                                if got is not None:
                                    infos[ino] = got
                                break
                            a += (alen + 3) & ~3
                off += (length + 3) & ~3
    except TimeoutError:
        raise SockDiagError("sock_diag: no reply from the kernel within 2 s") from None
