"""The connection dump skipped while eBPF sees no event on the server's ports
(readers.portquiet): the gate's rules on their own, then against `ss` on a real nginx and
on a server that holds connections without running (a peer's reset must still show)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

from conftest import wait_until
from readers import accepts_bpf
from readers.portquiet import QuietGate
from realservers import real_server  # noqa: F401 - the fixture
from sources.realattach import CONNECTIONS_QUIET, RealServerReader
from test_realservers import _client, _ss_per_pid, needs_ss

# -- the gate's rules, on counts given by hand


def test_the_last_dump_stands_only_while_nothing_moved_and_a_flush_followed_it() -> None:
    g = QuietGate()
    assert not g.may_skip(0.0, (0, 0))  # no dump yet
    g.dumped(0.0, (4, 7), (), {1, 2}, inflight=False)
    assert not g.may_skip(0.5, (4, 7))  # no flush asked for after the dump read yet
    assert g.may_skip(0.6, (5, 7))
    assert not g.may_skip(0.7, (7, 8))  # an event on the ports: dump
    assert not g.may_skip(0.8, None)  # bpftrace gone: dump
    g.dumped(1.0, (8, 8), {1, 2}, {1, 2}, inflight=True)
    assert not g.may_skip(2.0, (20, 8))  # data unacknowledged at the dump: an ACK is unseen
    assert g.skipped == 1


def test_a_cross_check_dump_that_finds_a_change_is_counted_and_said() -> None:
    g = QuietGate(crosscheck_s=30.0)
    g.dumped(0.0, (0, 0), (), {1, 2, 3}, inflight=False)
    assert g.may_skip(10.0, (40, 0))
    assert not g.may_skip(30.0, (120, 0))  # at most every crosscheck_s
    g.dumped(30.0, (120, 0), {1, 2, 3}, {1, 2, 3}, inflight=False)
    assert (g.checks, g.misses, g.note) == (1, 0, None)
    assert g.may_skip(40.0, (160, 0))
    assert not g.may_skip(60.0, (240, 0))
    g.dumped(60.0, (240, 0), {1, 2, 3}, {1, 2, 4}, inflight=False)
    assert (g.checks, g.misses) == (2, 1)
    assert g.note is not None and "1 connection(s) new and 1 gone" in g.note


def test_a_dump_made_for_a_change_is_no_cross_check() -> None:
    g = QuietGate(crosscheck_s=30.0)
    g.dumped(0.0, (0, 0), (), {1}, inflight=False)
    assert g.may_skip(1.0, (4, 0))
    assert not g.may_skip(31.0, (124, 1))  # an event: the difference is expected
    g.dumped(31.0, (124, 1), {1}, {1, 2}, inflight=False)
    assert (g.checks, g.misses) == (0, 0)


# -- against ss, with bpftrace

_WHY = accepts_bpf.queue_unavailable() or accepts_bpf.changes_unavailable()
needs_changes = pytest.mark.skipif(_WHY is not None, reason=f"eBPF events on the ports: {_WHY}")


def _ran_ns(pid: int) -> str:
    with open(f"/proc/{pid}/schedstat") as f:
        return f.read().split()[0]


def _counts(rd: RealServerReader) -> tuple[dict[int, int], bool]:
    r = rd.read()
    assert r.connections_source == CONNECTIONS_QUIET and r.connections_note is None
    return {w.pid: w.connections for w in r.workers if w.connections}, r.dumped


def _settled(port: int) -> dict[int, int]:
    """ss's per-process count once two reads agree (the server has acted on what we did)."""
    last: list[dict[int, int]] = [{}]

    def same() -> bool:
        now = _ss_per_pid(port)
        ok, last[0] = now == last[0], now
        return ok

    wait_until(same, 10, "ss to settle")
    return last[0]


def _equal_to_ss(rd: RealServerReader, plain: RealServerReader, port: int) -> None:
    """After an event: once bpftrace has flushed it, the gated reader's counts equal a
    reader that dumps every sample and equal ss."""
    want = _settled(port)
    assert rd.counter is not None
    rd.counter.sync()
    got, _ = _counts(rd)
    assert got == want == {w.pid: w.connections for w in plain.read().workers if w.connections}


def _quiet_skip(rd: RealServerReader) -> dict[int, int]:
    """Samples until one keeps a dump older than the 1 s rule allows (eBPF said nothing
    moved); its counts."""
    skipped = rd.quiet.skipped
    got: list[dict[int, int]] = [{}]

    def skip() -> bool:
        got[0], _ = _counts(rd)
        return rd.quiet.skipped > skipped

    wait_until(skip, 15, "a dump kept by the eBPF gate")
    return got[0]


@needs_ss
@needs_changes
@pytest.mark.slow
def test_nginx_connections_through_the_gate_equal_a_dump_and_ss(real_server) -> None:  # noqa: F811
    srv = real_server("nginx", workers=2)
    clients = [_client(srv.port) for _ in range(6)]
    with (
        RealServerReader(srv.root, [srv.port], exact_accepts=True, threads=True) as rd,
        RealServerReader(srv.root, [srv.port], threads=True) as plain,
    ):
        rd.quiet.crosscheck_s = 3.0  # a cross-check within the test
        _equal_to_ss(rd, plain, srv.port)
        assert _quiet_skip(rd) == _settled(srv.port)  # idle: no dump, still ss's figures
        reset = clients.pop()  # a reset from the client: nginx drops it
        reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset.close()
        _equal_to_ss(rd, plain, srv.port)
        for c in clients[:2]:  # closed by the client
            c.close()
        del clients[:2]
        _equal_to_ss(rd, plain, srv.port)
        clients += [_client(srv.port) for _ in range(3)]  # new ones
        _equal_to_ss(rd, plain, srv.port)
        assert _quiet_skip(rd) == _settled(srv.port) and sum(_settled(srv.port).values()) == 6
        wait_until(lambda: _counts(rd) and rd.quiet.checks >= 1, 15, "a cross-check dump")
        assert rd.quiet.misses == 0, rd.quiet.note
    for c in clients:
        c.close()


HOLDER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    print(s.getsockname()[1], flush=True)
    held = [s.accept()[0] for _ in range(int(sys.argv[1]))]
    sys.stdin.read()  # sleeps, holding them, until the test ends
    """
)


@needs_ss
@needs_changes
@pytest.mark.slow
def test_a_reset_on_a_connection_held_by_a_sleeping_server_shows_at_once() -> None:
    """The server does not run when a peer resets a connection it holds: only the kernel
    acts (state -> CLOSE), and the gate must see it (no dump was older than 1 s before)."""
    srv = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        with (
            RealServerReader(srv.pid, [port], exact_accepts=True) as rd,
            RealServerReader(srv.pid, [port]) as plain,
        ):
            wait_until(lambda: _counts(rd)[0] == {srv.pid: 3}, 10, "3 held")
            assert _quiet_skip(rd) == {srv.pid: 3} == _settled(port)
            cpu = _ran_ns(srv.pid)
            clients[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            clients[0].close()
            _equal_to_ss(rd, plain, port)
            assert _counts(rd)[0] == {srv.pid: 2}
            clients[1].sendall(b"x")  # data in, unread: its Recv-Q and bytes moved

            def unread() -> bool:
                w = next(w for w in rd.read().workers if w.pid == srv.pid)
                return w.peers is not None and sorted(p.recv_q for p in w.peers.listed) == [0, 1]

            wait_until(unread, 5, "the byte in the held connection's Recv-Q")
            assert _ran_ns(srv.pid) == cpu  # it slept
            assert rd.quiet.misses == 0
    finally:
        os.killpg(srv.pid, signal.SIGKILL)
        srv.wait()
    for c in clients:
        c.close()
