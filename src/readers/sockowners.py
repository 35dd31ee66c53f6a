"""Which process of a tree holds which socket inode, and when the host's TCP sockets
cannot have changed (so a connection dump can be skipped). The sockets themselves come
from a sock_diag dump (readers.sockdiag).

`SocketOwners` maps socket inodes to the pids of a given process tree incrementally:
the /proc/PID/fd directories of the tree only (never all of /proc) are read when the
dump shows an inode not seen before, reading links only for fd numbers not seen before
(or whose socket has gone). Each update also re-reads all links of the root (the usual
giver: Node's round-robin master) and of an eighth of the other pids (round robin); when
a live socket has left a re-read pid (an SCM_RIGHTS hand-over), every pid is listed again
at once. So a socket the root hands over shows in its new owner at the next sample; one
a worker hands over, within 8 samples (2 s at 4 Hz). A pid that has not run since its
links were last all read (readers.notrun) is not re-read: its fds cannot have changed.
Sockets shared by several processes (a listening socket inherited by prefork children)
have all of them as owners, as in `ss -tnp`.

`TcpChangeGate` reads the namespace's TCP counters (~20 us) and tells when nothing can
have changed since the last dump (~2.4 ms at 50k TIME-WAIT): the idle server on a busy
host.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .notrun import NotRun


def _fd_socket_inode(path: str) -> int:
    """The socket inode an fd link points to, 0 for anything else (or gone)."""
    try:
        link = os.readlink(path)
    except OSError:
        return 0
    if link.startswith("socket:["):
        return int(link[8:-1])
    return 0


@dataclass(slots=True)
class OwnerReading:
    """What `SocketOwners.update` found: per pid, the inodes it holds among the dump's
    sockets, and how many of them are new since the previous update (the new-connection
    ESTIMATE: a connection opened and closed between two updates is never seen)."""

    by_pid: dict[int, set[int]]
    new_by_pid: dict[int, int] | None  # None on the first update (no interval yet)
    scanned: bool  # whether any /proc/PID/fd was read this time
    interval_s: float | None = None
    denied: frozenset[int] = frozenset()  # pids whose fds this user may not read: what
    # they hold is unknown (not nothing)


@dataclass(slots=True)
class SocketOwners:
    """Which pids of a process tree hold which socket inodes (incremental, see module doc).

    Call `update(pids, inodes)` once per sample with the tree's pids and the inodes from
    the dump (0s ignored). Each update also re-reads every link of 1/`verify_every` of the
    pids (round robin), so each pid is verified every `verify_every` updates (2 s at 4 Hz)
    at a bounded cost per sample, instead of a costly full pass now and then."""

    verify_every: int = 8
    fds: dict[int, dict[str, int]] = field(default_factory=dict)  # pid -> {fd name: inode}
    _seen: set[int] = field(default_factory=set)  # inodes of the previous update
    _foreign: set[int] = field(default_factory=set)  # searched for, held by nobody of ours
    _n: int = 0
    _last_at: float | None = None
    denied: set[int] = field(default_factory=set)  # pids whose fd directory is not ours to read
    not_run: NotRun = field(default_factory=NotRun)  # who has not run since its verification
    quiet: int = 0  # verifications left out: the pid had not run since its last one

    def _scan(self, pids: Iterable[int], alive: set[int], verify: set[int]) -> None:
        fds = self.fds
        for pid in pids:
            base = f"/proc/{pid}/fd/"
            try:
                names = os.listdir(base)
            except PermissionError:  # another user's process, and we are not root
                fds.pop(pid, None)
                self.denied.add(pid)
                continue
            except OSError:
                fds.pop(pid, None)
                continue
            self.denied.discard(pid)
            old = {} if pid in verify else fds.get(pid, {})
            cur: dict[str, int] = {}
            for name in names:
                ino = old.get(name)
                # an fd number seen before still holding a live socket is the same fd: a
                # number is reused only after close(), and then its socket is gone (or
                # held elsewhere, which the rolling verification re-reads)
                if ino is None or ino not in alive:
                    ino = _fd_socket_inode(base + name)
                cur[name] = ino
            fds[pid] = cur

    def update(
        self, pids: Iterable[int], inodes: Iterable[int], now: float | None = None
    ) -> OwnerReading:
        now = time.monotonic() if now is None else now
        pids = list(pids)
        alive = {i for i in inodes if i}
        for gone in set(self.fds) - set(pids):
            del self.fds[gone]
        if self.verify_every and self._n % self.verify_every == 0:
            self.not_run.keep_only(pids)
        self.denied &= set(pids)
        known: set[int] = set()
        for cur in self.fds.values():
            known.update(cur.values())
        unknown = alive - known - self._foreign
        k = self.verify_every
        verify = set(pids[self._n % k :: k]) if k > 0 else set()
        if k > 0 and pids:
            verify.add(pids[0])  # the root, every time: it is the one handing sockets over
        self._n += 1
        scanned = bool(unknown) or not set(pids) - self.denied <= set(self.fds)
        if scanned:
            self._scan(pids, alive, verify)
        else:
            # a pid that has not run since its links were last all read holds the same
            # fds (readers.notrun): its verification would read the same links again
            quiet = {pid for pid in verify if self.not_run.check(pid)}
            self.quiet += len(quiet)
            verify -= quiet
            for pid in verify:
                self.not_run.mark(pid)
            held = {pid: set(self.fds.get(pid, {}).values()) & alive for pid in verify}
            self._scan(verify, alive, verify)
            moved = any(held[pid] - set(self.fds.get(pid, {}).values()) for pid in verify)
            if moved:  # a live socket left a verified pid: find where it went, now
                self._scan(pids, alive, set())
                scanned = True
        known = set()
        for cur in self.fds.values():
            known.update(cur.values())
        self._foreign = (self._foreign & alive) | (alive - known)
        by_pid: dict[int, set[int]] = {}
        for pid, cur in self.fds.items():
            by_pid[pid] = {i for i in cur.values() if i in alive}
        prev = self._seen
        new_by_pid: dict[int, int] | None = None
        iv = None
        if self._last_at is not None:
            new_by_pid = {pid: len(s - prev) for pid, s in by_pid.items()}
            iv = now - self._last_at
        self._seen = alive
        self._last_at = now
        return OwnerReading(by_pid, new_by_pid, scanned, iv, frozenset(self.denied))


class TcpChangeGate:
    """Tells when the host's TCP sockets cannot have changed since the last real dump, so
    the connection dump (a walk of the kernel's whole established table, ~2.4 ms at 50k
    TIME-WAIT) can be skipped on an idle server.

    The key is the namespace's own counters: ActiveOpens, PassiveOpens, AttemptFails,
    EstabResets and CurrEstab from /proc/net/snmp, and TCP inuse/orphan from
    /proc/net/sockstat (~20 us to read both; an attached server's namespace's through
    /proc/PID/net; orphan is counted host-wide, which costs a dump, never misses one).
    Any socket entering the connected set opens (Active/PassiveOpens); leaving it goes
    through ESTABLISHED -> CLOSE_WAIT/FIN_WAIT (CurrEstab) or destruction (inuse) or a
    reset. A real dump is still made at least
    every `max_age_s`. Under traffic the counters move every sample, so this saves
    nothing there: it is for the idle (or lightly loaded) server on a busy host.
    """

    def __init__(self, max_age_s: float = 1.0, net_dir: str = "/proc/net") -> None:
        self.max_age_s = max_age_s
        self.net_dir = net_dir  # the server's namespace's (/proc/PID/net for another's)
        self._key: tuple | None = None
        self._at = -1e18
        self.skipped = 0

    def counters(self) -> tuple:
        with open(f"{self.net_dir}/snmp", "rb") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith(b"Tcp:")]
        vals = lines[1].split() if len(lines) > 1 else []
        with open(f"{self.net_dir}/sockstat", "rb") as f:
            tcp = next((ln.split() for ln in f.read().splitlines() if ln.startswith(b"TCP:")), [])
        # Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails
        #      EstabResets CurrEstab ...;  TCP: inuse N orphan N tw N alloc N mem N
        return (*vals[5:10], *tcp[2:5:2])

    def may_skip(self, now: float) -> bool:
        """True when the last dump's result still holds; else False (then dump)."""
        key = self.counters()
        if key == self._key and now - self._at < self.max_age_s:
            self.skipped += 1
            return True
        self._key = key
        self._at = now
        return False
