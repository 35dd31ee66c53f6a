"""sock_diag reader and socket owners against `ss` ground truth (iproute2)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import termios
from collections import Counter

import pytest

from conftest import assert_all_gone, wait_until
from readers import sockdiag, sockscan
from readers.sockdiag import SockDiag
from readers.sockowners import OwnerReading, SocketOwners, TcpChangeGate
from values.snapshot import Hold

SS = shutil.which("ss")
needs_ss = pytest.mark.skipif(SS is None, reason="ss not installed (Debian package iproute2)")


def _ss(args: list[str], ports: list[int]) -> list[str]:
    flt = " or ".join(f"sport = :{p}" for p in ports)
    out = subprocess.run(
        [SS or "ss", *args, "-H", f"( {flt} )"], capture_output=True, text=True, check=True
    ).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


def _listener(family: int = socket.AF_INET, backlog: int = 16) -> socket.socket:
    s = socket.socket(family)
    s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    s.listen(backlog)
    return s


def _connect(port: int, family: int = socket.AF_INET) -> socket.socket:
    return socket.create_connection(("127.0.0.1" if family == socket.AF_INET else "::1", port))


@needs_ss
def test_listeners_queue_and_limit_equal_ss_ltn_for_ipv4_and_ipv6() -> None:
    a, b = _listener(backlog=7), _listener(socket.AF_INET6, backlog=3)
    pa, pb = a.getsockname()[1], b.getsockname()[1]
    clients = [_connect(pa) for _ in range(4)] + [_connect(pb, socket.AF_INET6) for _ in range(2)]
    try:
        with SockDiag() as d:
            got = {(x.local_port, x.rqueue, x.wqueue) for x in d.listeners([pa, pb])}
        truth = set()
        for ln in _ss(["-ltn"], [pa, pb]):
            f = ln.split()
            truth.add((int(f[3].rsplit(":", 1)[1]), int(f[1]), int(f[2])))
        assert got == truth == {(pa, 4, 7), (pb, 2, 3)}
        inodes = {x.inode for x in sockdiag.SockDiag().listeners([pa])}
        assert inodes == {os.fstat(a.fileno()).st_ino}
    finally:
        for c in clients:
            c.close()
        a.close()
        b.close()


@needs_ss
def test_connections_are_filtered_in_the_kernel_to_the_given_ports_and_equal_ss_tn() -> None:
    a, other = _listener(), _listener()
    pa, po = a.getsockname()[1], other.getsockname()[1]
    b = _listener(socket.AF_INET6)
    pb = b.getsockname()[1]
    clients = [_connect(pa) for _ in range(5)] + [_connect(po) for _ in range(3)]
    clients += [_connect(pb, socket.AF_INET6) for _ in range(2)]
    served = [a.accept()[0] for _ in range(3)] + [b.accept()[0]]
    try:
        with SockDiag() as d:
            got = d.connections([pa, pb])
        assert all(x.local_port in (pa, pb) for x in got)  # the other port's are not there
        truth = Counter()
        for ln in _ss(["-tn"], [pa, pb]):
            f = ln.split()
            truth[(f[0], f[3], f[4])] += 1
        mine = Counter(
            (
                x.state_name,
                f"{x.local_address}:{x.local_port}"
                if x.family == socket.AF_INET
                else f"[{x.local_address}]:{x.local_port}",
                f"{x.remote_address}:{x.remote_port}"
                if x.family == socket.AF_INET
                else f"[{x.remote_address}]:{x.remote_port}",
            )
            for x in got
        )
        assert mine == truth
        assert sum(mine.values()) == 7
        # accepted sockets have an inode (a file holds them); queued ones do not yet
        accepted = {os.fstat(s.fileno()).st_ino for s in served}
        assert {x.inode for x in got if x.inode} == accepted
        with SockDiag() as d:
            assert sorted(d.inodes([pa, pb])) == sorted(x.inode for x in got)
    finally:
        for s in clients + served:
            s.close()
        for s in (a, b, other):
            s.close()


def test_a_filter_over_many_ports_keeps_exactly_those_ports() -> None:
    socks = [_listener() for _ in range(5)]
    ports = [s.getsockname()[1] for s in socks]
    try:
        with SockDiag() as d:
            assert {x.local_port for x in d.listeners(ports[1:4])} == set(ports[1:4])
            assert {x.local_port for x in d.listeners([ports[4]])} == {ports[4]}
    finally:
        for s in socks:
            s.close()


def test_a_bad_port_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a TCP port: 70000"):
        sockdiag.port_filter([80, 70000])


def _holder(port: int, ready, stop) -> None:  # child process: accept and hold until stop
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(64)
    lsock.settimeout(0.05)
    ready.set()
    held = []
    while not stop.is_set():
        try:
            held.append(lsock.accept()[0])
        except TimeoutError:
            pass


_USERS = re.compile(r"pid=(\d+)")


@needs_ss
def test_per_process_connections_equal_ss_tnp() -> None:
    """Two processes each hold a reuseport listener on the same port and the connections
    they accepted; SocketOwners attributes each to its process as `ss -tnp` does."""
    ctx = multiprocessing.get_context("fork")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    stop = ctx.Event()
    readies = [ctx.Event(), ctx.Event()]
    procs = [ctx.Process(target=_holder, args=(port, r, stop)) for r in readies]
    for p in procs:
        p.start()
    clients = []
    try:
        for r in readies:
            assert r.wait(10)
        with SockDiag() as d:
            pids = [p.pid for p in procs]

            for _ in range(6):
                clients.append(_connect(port))
            wait_until(
                lambda: sum(1 for x in d.connections([port]) if x.inode) == 6, 10, "6 accepts"
            )
            owners = SocketOwners()
            conns = d.connections([port])
            r = owners.update(pids, [x.inode for x in conns])
            assert r.new_by_pid is None  # no interval yet: unknown, not zero
            truth = Counter()
            for ln in _ss(["-tnp"], [port]):
                for pid in _USERS.findall(ln):
                    truth[int(pid)] += 1
            assert {pid: len(s) for pid, s in r.by_pid.items() if s} == dict(truth)
            assert sum(truth.values()) == sum(1 for x in conns if x.inode)
            listen = owners.update(pids, [x.inode for x in d.listeners([port])])
            assert all(len(s) == 1 for s in listen.by_pid.values())  # one listener each
    finally:
        stop.set()
        for c in clients:
            c.close()
        for p in procs:
            p.join(10)
        assert_all_gone([p.pid for p in procs if p.pid])


def _receiver(chan: socket.socket, got, stop) -> None:
    fds = []
    while len(fds) < 2:
        _, newfds, _, _ = socket.recv_fds(chan, 16, 4)
        fds += newfds
    got.set()
    stop.wait(30)


def test_new_connections_are_counted_per_process_and_a_handed_over_socket_moves() -> None:
    """The parent accepts two connections (new: 2 for the parent), then hands them to a
    child over SCM_RIGHTS and closes its copies, as Node's round-robin master does; the
    next verification pass finds them in the child, without counting them as new again."""
    ctx = multiprocessing.get_context("fork")
    lsock = _listener()
    port = lsock.getsockname()[1]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    got, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_receiver, args=(b, got, stop))
    child.start()
    me = os.getpid()
    clients = []
    try:
        with SockDiag() as d:
            owners = SocketOwners(verify_every=0)
            t = 0.0

            def upd(now: float) -> OwnerReading:
                return owners.update(
                    [me, child.pid], [x.inode for x in d.connections([port])], now=now
                )

            upd(t)
            clients = [_connect(port) for _ in range(2)]
            served = [lsock.accept()[0] for _ in range(2)]
            r = upd(t + 0.25)
            assert r.new_by_pid == {me: 2, child.pid: 0}
            assert len(r.by_pid[me]) == 2
            socket.send_fds(a, [b"x"], [s.fileno() for s in served])
            assert got.wait(10)
            for s in served:
                s.close()
            r = upd(t + 0.5)  # no new inode: no scan, still the parent's (stale by design)
            assert not r.scanned and len(r.by_pid[me]) == 2
            owners.verify_every = 2  # the root (me) re-read at each update, others every 2
            r = upd(t + 0.75)
            assert r.scanned  # the sockets left the root: everyone listed again at once
            assert len(r.by_pid[child.pid]) == 2 and not r.by_pid[me]
            assert r.new_by_pid == {me: 0, child.pid: 0}
    finally:
        stop.set()
        for c in clients:
            c.close()
        child.join(10)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            child.join(5)
        lsock.close()
        a.close()
        b.close()
        assert_all_gone([child.pid])


def test_the_one_pass_request_and_the_per_family_requests_give_the_same_sockets() -> None:
    a, b = _listener(), _listener(socket.AF_INET6)
    pa, pb = a.getsockname()[1], b.getsockname()[1]
    clients = [_connect(pa) for _ in range(3)] + [_connect(pb, socket.AF_INET6) for _ in range(2)]
    try:
        with SockDiag() as d:
            one = d.connections([pa, pb])
            assert d.compat  # this kernel takes TCPDIAG_GETSOCK
            d.compat = False
            per_family = d.connections([pa, pb])
        key = lambda x: (x.family, x.local_port, x.remote_port, x.state)  # noqa: E731
        assert sorted(map(key, one)) == sorted(map(key, per_family))
        assert len(one) == 5 and {x.family for x in one} == {socket.AF_INET, socket.AF_INET6}
    finally:
        for c in clients:
            c.close()
        a.close()
        b.close()


def test_the_change_gate_does_not_skip_after_a_connection_opens_nor_when_too_old() -> None:
    gate = TcpChangeGate(max_age_s=1.0)
    assert not gate.may_skip(0.0)  # the first time: dump
    lsock = _listener()
    c = _connect(lsock.getsockname()[1])  # PassiveOpens and ActiveOpens move
    try:
        assert not gate.may_skip(0.1)
        gate._key = gate.counters()
        gate._at = 10.0
        assert not gate.may_skip(11.5)  # older than max_age_s: dump again
    finally:
        c.close()
        lsock.close()


def d_rqueue(s: socket.socket) -> int:
    """Bytes waiting to be read on `s`."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


@needs_ss
def test_scan_reads_what_each_connection_did_its_half_open_ones_and_leaves_ours_apart() -> None:
    """One dump: tcp_info per connection (a response out then nothing: keep-alive; bytes
    in, no answer: partial; nothing: silent), half-open connections per port as ss counts
    them (TCP_DEFER_ACCEPT keeps a silent client's handshake half-open, as Apache's
    listener does), and a connection from one of `own`'s endpoints apart (queued)."""
    a = _listener()
    deferred = socket.socket()
    deferred.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 30)
    deferred.bind(("127.0.0.1", 0))
    deferred.listen(8)
    pa, pd = a.getsockname()[1], deferred.getsockname()[1]
    keep, part, quiet = _connect(pa), _connect(pa), _connect(pa)
    sk, sp, sq = (a.accept()[0] for _ in range(3))
    keep.sendall(b"GET / HTTP/1.1\r\n\r\n")
    sk.recv(100)
    sk.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    part.sendall(b"GET / HT")
    wait_until(lambda: d_rqueue(sp) == 8, 2, "8 bytes in")
    sp.recv(100)
    own = socket.socket()
    own.bind(("127.0.0.1", 0))
    own.connect(("127.0.0.1", pa))  # ours, left in the accept queue
    half = [_connect(pd) for _ in range(2)]
    socks = [keep, part, quiet, sk, sp, sq, own, *half, a, deferred]
    try:
        wait_until(lambda: len(_ss(["-tn", "state", "syn-recv"], [pd])) == 2, 2, "2 half-open")
        with SockDiag() as d:
            got = sockscan.scan(d, [pa, pd], own=[own.getsockname()], info=True)
        inode = {s: os.fstat(s.fileno()).st_ino for s in (sk, sp, sq)}
        assert sorted(got.inodes) == sorted(inode.values())  # not ours, nor the half-open
        holds = {s: got.info[i].hold for s, i in inode.items()}
        assert holds == {sk: Hold.KEEPALIVE, sp: Hold.PARTIAL, sq: Hold.SILENT}
        assert got.info[inode[sp]].bytes_received == 8
        assert got.info[inode[sk]].bytes_sent == len(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        )
        assert got.syn_recv == {pd: 2}
        assert got.own_seen == {own.getsockname()} and got.own_queued == {pa: 1}
    finally:
        for s in socks:
            s.close()
