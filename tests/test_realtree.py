"""Roles, states and CPU of a real process tree (a small forking server written here)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import assert_all_gone, wait_until
from readers import realtree
from readers.realtree import RealTree, Role
from readers.sockdiag import SockDiag
from readers.sockowners import SocketOwners

# a master that forks 2 workers, each with its own reuseport listener registered in its own
# epoll set, and a helper that holds no socket; the workers accept and hold connections
SERVER = textwrap.dedent(
    """
    import os, select, socket, sys, time
    port = int(sys.argv[1])
    def listener():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        return s
    socks = [listener(), listener()]  # the master holds both, as nginx's does
    kids = []
    ready_r, ready_w = os.pipe()  # each worker says when its epoll set holds its listener
    for i in range(2):
        pid = os.fork()
        if pid == 0:
            ep = select.epoll()
            ep.register(socks[i].fileno(), select.EPOLLIN)
            os.write(ready_w, b"r")
            held = []
            while True:
                for fd, _ in ep.poll():
                    held.append(socks[i].accept()[0])
        kids.append(pid)
    def helper():
        pid = os.fork()
        if pid == 0:
            for s in socks:
                s.close()
            while True:
                time.sleep(1)
        return pid
    kids.append(helper())
    got = b""
    while len(got) < 2:  # both workers registered: only then are we ready (a test read
        got += os.read(ready_r, 2)  # the epoll sets before the second worker had one)
    print(" ".join(map(str, kids)), flush=True)
    while True:  # a helper that dies is replaced at once (a respawn)
        os.wait()
        print(helper(), flush=True)
    """
)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def forking_server():
    port = _free_port()
    # its own process group: the master re-forks a helper that dies, so killing the tree
    # pid by pid raced with it (a killed helper was replaced, and the new one outlived the
    # test); one SIGKILL to the group takes the master and every child at once
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    kids = [int(x) for x in proc.stdout.readline().split()]
    try:
        yield proc, kids, port
    finally:
        every = [*realtree.descendants(proc.pid), *kids, proc.pid]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        assert_all_gone(every)


def _reading(tree: RealTree, d: SockDiag, owners: SocketOwners, port: int):
    listen = d.listeners([port])
    conns = d.connections([port])
    pids = [tree.root, *realtree.descendants(tree.root)]
    lo = owners.update(pids, [x.inode for x in listen])
    lset = {x.inode for x in listen}
    co = SocketOwners().update(pids, [x.inode for x in conns])
    return tree.sample({p: s & lset for p, s in lo.by_pid.items()}, co.by_pid), listen, co


def test_workers_master_and_helper_are_told_apart_and_a_stopped_worker_shows_t(
    forking_server,
) -> None:
    proc, (w1, w2, helper), port = forking_server
    root = proc.pid
    clients = []
    tree = RealTree(root, threads=True)
    try:
        with SockDiag() as d:
            owners = SocketOwners()
            samples, listen, _ = _reading(tree, d, owners, port)
            roles = {s.pid: s.role for s in samples}
            assert roles == {
                root: Role.MASTER,
                w1: Role.WORKER,
                w2: Role.WORKER,
                helper: Role.HELPER,
            }
            assert all(s.state in "RS" for s in samples)
            assert all(s.cpu_ns is not None and s.cpu_ns > 0 for s in samples)
            # each worker polls exactly one of the two listeners, a different one each
            assert set(tree.epoll_listeners) == {w1, w2}
            assert tree.epoll_listeners[w1] != tree.epoll_listeners[w2]
            assert tree.epoll_listeners[w1] | tree.epoll_listeners[w2] == {x.inode for x in listen}
            # stop worker 1: its state reads T, and connections hashed to its listener
            # wait in that listener's own queue
            os.kill(w1, signal.SIGSTOP)
            wait_until(
                lambda: {s.pid: s.state for s in _reading(tree, d, owners, port)[0]}[w1] == "T",
                5,
                "worker 1 to read as stopped",
            )
            stopped_inode = next(iter(tree.epoll_listeners[w1]))
            for _ in range(40):
                clients.append(socket.create_connection(("127.0.0.1", port)))

            def queues() -> dict[int, int]:
                return {x.inode: x.rqueue for x in d.listeners([port])}

            # the live worker drains its own queue; the stopped one's keeps its share
            wait_until(
                lambda: (
                    queues()[stopped_inode] > 0
                    and sum(queues().values()) == queues()[stopped_inode]
                ),
                5,
                "only the stopped worker's queue to hold connections",
            )
            q = queues()[stopped_inode]
            samples, _, co = _reading(tree, d, owners, port)
            st = {s.pid: s for s in samples}
            assert st[w1].state == "T" and st[w2].state in "RS"
            assert len(co.by_pid[w2]) == 40 - q
            os.kill(w1, signal.SIGCONT)
    finally:
        for c in clients:
            c.close()
        tree.close()


def test_cpu_comes_from_schedstat_in_nanoseconds_and_a_new_child_rereads_the_tree(
    forking_server,
) -> None:
    proc, (w1, w2, helper), _port = forking_server
    root = proc.pid
    tree = RealTree(root)
    try:
        first = {s.pid: s for s in tree.sample()}
        assert set(first) == {root, w1, w2, helper}
        with open(f"/proc/{w1}/schedstat") as f:
            ns = int(f.read().split()[0])
        assert abs(first[w1].cpu_ns - ns) < 50_000_000
        reads = tree.tree_reads
        tree.sample()
        assert tree.tree_reads == reads  # nothing changed: no re-read
        os.kill(helper, signal.SIGKILL)
        new_helper = int(proc.stdout.readline())  # the master reaped it and forked anew
        after = {s.pid: s for s in tree.sample()}  # at once, not after TREE_EVERY_S
        assert tree.tree_reads == reads + 1
        assert helper not in after
        assert after[new_helper].role is Role.HELPER
    finally:
        tree.close()


def test_an_idle_tree_skips_the_connection_dump_and_a_new_connection_is_seen_at_once(
    forking_server,
) -> None:
    from sources.realattach import RealServerReader

    proc, (w1, w2, _), port = forking_server
    clients: list[socket.socket] = []
    with RealServerReader(proc.pid, [port]) as rd, SockDiag() as d:
        first = rd.read()
        assert sum(w.connections for w in first.workers) == 0
        # nothing runs in the tree between two reads (the helper wakes once a second)
        wait_until(lambda: rd.read() is not None and rd.gate_idle >= 2, 10, "an idle skip")
        assert {w.pid: w.role for w in rd.read().workers}[w1] == Role.WORKER
        clients.append(socket.create_connection(("127.0.0.1", port)))
        wait_until(lambda: all(x.rqueue == 0 for x in d.listeners([port])), 5, "the accept")
        held = {w.pid: w.connections for w in rd.read().workers}
        assert held[w1] + held[w2] == 1
        for c in clients:
            c.close()
