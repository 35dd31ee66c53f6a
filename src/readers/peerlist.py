"""Each process's connections as their sockets show them (`current.Peers`), for attach: the
oldest PEERS_LISTED with their peer, TCP state, queues and tcp_info, and the count of all.

Fed by the connection dumps (readers.sockscan): every dump tells which connections
exist (for when each opened), the dumps that read tcp_info (at most every 0.5 s,
sources.realattach) what each did. A process's list is built again only when its
connections or that reading changed, so a sample between two tcp_info reads costs a set
comparison per process; building one is ~2 us a listed connection (positional Peers).

When a connection opened: from tcp_info while nothing came in on it (the kernel's
last-receive time starts at the handshake; in jiffies, so to a tick: seen 3 ms early to
29 ms late against the handshake's own time, 150 connections on a loaded 2-core VM), else
when a dump first saw it (a sample late at most); None for those the first dump found
(open before the monitor looked). Lists are ordered by it: two connections opened within
a few ticks of each other may be listed either way round.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from values.current import PEERS_LISTED, Peer, Peers, client_text
from values.positional import positional_new

from .sockdiag import STATE_NAMES, _ntop
from .sockscan import Conn, Scan
from .tcpinfo import TcpInfo

_new_peer = positional_new(Peer)
NONE_HELD = Peers()


class PeerList:
    """Call `dumped` after each connection dump, `of(pid, held)` per process, then `keep`
    with the pids still there."""

    def __init__(self) -> None:
        self._opened: dict[int, float | None] = {}  # per connection inode (module docstring)
        self._conns: dict[int, Conn] = {}  # per inode, from the last tcp_info dump
        self._info: dict[int, TcpInfo] = {}
        self._at = -1e18  # when that dump was made (monotonic)
        self._first = 0.0  # when the first dump was made: what opened before is no later
        self._lists: dict[int, tuple[set[int], float, Peers]] = {}  # pid: held, _at, list

    def dumped(self, cinodes: set[int], now: float, *, first: bool, scan: Scan | None) -> None:
        """A dump at `now` showed connections `cinodes`; `scan` when it read tcp_info."""
        opened = self._opened
        for gone in opened.keys() - cinodes:
            del opened[gone]
        seen = None if first else now
        if first:
            self._first = now
        for ino in cinodes - opened.keys():
            opened[ino] = seen
        if scan is None:
            return
        self._conns, self._info, self._at = scan.conns, scan.info, now
        for ino, inf in scan.info.items():
            if not inf.bytes_received and ino in opened:
                opened[ino] = now - inf.last_recv_ms / 1000.0

    def forget_info(self) -> None:
        """What the connections did is no longer read (too many): listed none."""
        if self._conns:
            self._conns, self._info, self._at = {}, {}, -1e18

    def of(self, pid: int, held: set[int] | tuple[()]) -> Peers:
        """The connections `pid` holds: the PEERS_LISTED oldest (by when they opened; one
        open before the first dump at the first dump's time, the latest it can have opened;
        inode order among equals) as the last tcp_info dump read them, and the count of
        all (newer ones counted, not listed)."""
        if not held:
            return NONE_HELD
        at = self._at
        cached = self._lists.get(pid)
        if cached is not None and cached[1] == at and cached[0] == held:
            return cached[2]
        conns, infos, opened, first = self._conns, self._info, self._opened, self._first

        def age(i: int) -> tuple[float, int]:
            t = opened.get(i)
            return (first if t is None else t, i)

        listed = []
        for ino in heapq.nsmallest(PEERS_LISTED, [i for i in held if i in conns], key=age):
            state, family, dst, port, rq, wq = conns[ino]
            inf = infos.get(ino)
            listed.append(
                _new_peer(
                    client_text(_ntop(family, dst), port),
                    STATE_NAMES.get(state, str(state)),
                    rq,
                    wq,
                    None if inf is None else inf.bytes_received,
                    None if inf is None else inf.bytes_sent,
                    None if inf is None else at - inf.last_recv_ms / 1000.0,
                    None if inf is None else at - inf.last_sent_ms / 1000.0,
                    opened.get(ino),
                )
            )
        peers = Peers(tuple(listed), len(held))
        self._lists[pid] = (set(held), at, peers)
        return peers

    def keep(self, pids: Iterable[int]) -> None:
        """Forget the lists of processes gone."""
        for gone in self._lists.keys() - set(pids):
            del self._lists[gone]
