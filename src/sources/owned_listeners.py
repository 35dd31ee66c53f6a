"""The listening sockets of a server whose workers alone hold them (reuseport --migrate):
read by sock_diag, each known by its inode and given the index of the worker holding it.

The supervisor keeps no copy of these sockets (a copy would keep a worker's socket open
after the worker closes it, and its queue would not migrate), so TCP_INFO cannot be
asked; a LISTEN dump on the server's port gives each socket's accept queue
(idiag_rqueue), its limit (idiag_wqueue) and its drops (SKMEMINFO), as `ss -ltn` shows
them. Which worker holds which inode comes from the workers' /proc/PID/fd links, read
again only when the set of inodes or of workers changed (a restart: a handful of links).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from readers.procfs import socket_inodes
from readers.sockdiag import DiagSocket, SockDiag


@dataclass(frozen=True, slots=True)
class OwnedListener:
    index: int  # the holding worker's listener index; past every slot when none holds it
    sock: DiagSocket


class OwnedListeners:
    """Each sample: `read(port, workers)` with the live workers as (pid, listener index)."""

    def __init__(self) -> None:
        self._diag: SockDiag | None = None
        self._key: tuple[frozenset[int], frozenset[tuple[int, int]]] | None = None
        self._index: dict[int, int] = {}  # inode -> listener index

    def close(self) -> None:
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def read(self, port: int, workers: Iterable[tuple[int, int]]) -> list[OwnedListener]:
        """The port's listening sockets, ordered by index. Raises OSError (SockDiagError)
        when sock_diag cannot be used: the caller shows the queues as unknown."""
        if self._diag is None:
            self._diag = SockDiag()
        socks = self._diag.listeners([port])
        held = frozenset((pid, index) for pid, index in workers if index >= 0)
        key = (frozenset(s.inode for s in socks), held)
        if key != self._key:
            self._key = key
            self._index = {}
            for pid, index in sorted(held):
                for inode in set(socket_inodes(pid)) & key[0]:
                    self._index.setdefault(inode, index)
        top = max((i for _, i in held), default=-1)
        out = []
        for s in sorted(socks, key=lambda s: s.inode):
            found = self._index.get(s.inode)
            if found is None:  # a socket no worker holds (yet): after every slot's index
                top += 1
                found = top
            out.append(OwnedListener(found, s))
        return sorted(out, key=lambda o: o.index)
