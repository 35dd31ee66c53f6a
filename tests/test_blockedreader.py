"""readers.blockedreader on real processes: a process that has not run since it was read
is not read again, and what it reads is always what readers.syscalls reads afresh: a
process that moved on to another call is seen at once, and one with several threads is
read in full (another thread may change the fd its main thread waits on)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import wait_until
from readers import syscalls
from readers.blockedreader import BlockedReader
from readers.realtree import RealTree

pytestmark = pytest.mark.timeout(30)

# accept() on a listener, then recv() on the accepted connection, then a sleep
STEPS = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], s.fileno(), flush=True)
c = s.accept()[0]
print(c.fileno(), flush=True)
c.recv(1)
time.sleep(30)
"""

# main thread in recv() on one end of a socketpair; another thread, told on stdin, puts a
# pipe on that fd number (dup2) while the main thread stays blocked
DUP = """
import os, socket, sys, threading
a, b = socket.socketpair()
r, w = os.pipe()
def swap():
    sys.stdin.readline()
    os.dup2(r, a.fileno())
    print("swapped", flush=True)
    sys.stdin.readline()
threading.Thread(target=swap).start()
print(a.fileno(), flush=True)
a.recv(1)
"""


def _calls(pid: int, want: str) -> None:
    wait_until(lambda: (b := syscalls.blocked(pid, [])) is not None and b.call == want)


def test_a_thread_that_did_not_run_is_not_read_again_and_one_that_moved_on_is_seen() -> None:
    p = subprocess.Popen([sys.executable, "-c", STEPS], stdout=subprocess.PIPE, text=True)
    reader = BlockedReader()
    try:
        assert p.stdout is not None
        port, listen_fd = map(int, p.stdout.readline().split())
        _calls(p.pid, "accept4")
        first = reader.read(p.pid, [])
        reads = reader.reads
        for _ in range(3):  # blocked in accept, nothing connects: it does not run
            reader.sweep()
            assert reader.read(p.pid, []) == first == syscalls.blocked(p.pid, [])
        assert reader.reads == reads  # answered without reading its syscall file
        assert first is not None and (first.call, first.fd, first.socket) == (
            "accept4",
            listen_fd,
            True,
        )
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn_fd = int(p.stdout.readline())  # it ran: accepted, now in recv
            _calls(p.pid, "recvfrom")
            got = reader.read(p.pid, [])
            assert got == syscalls.blocked(p.pid, [])
            assert got is not None and (got.call, got.fd) == ("recvfrom", conn_fd)
            client.sendall(b"x")
            _calls(p.pid, "clock_nanosleep")
            got = reader.read(p.pid, [])
            assert got == syscalls.blocked(p.pid, [])
            assert got is not None and got.call == "clock_nanosleep"
    finally:
        p.kill()
        p.wait()
    reader.sweep()
    assert reader.read(p.pid, []) is None  # gone: unknown, not its last call
    reader.close()


def test_the_fd_is_told_anew_when_another_thread_changed_it() -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", DUP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    reader = BlockedReader()
    try:
        assert p.stdin is not None and p.stdout is not None
        fd = int(p.stdout.readline())
        _calls(p.pid, "recvfrom")
        got = reader.read(p.pid, [])
        assert got is not None and (got.fd, got.socket) == (fd, True)
        reads = reader.reads
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "swapped"
        got = reader.read(p.pid, [])
        assert reader.reads == reads + 1  # two threads: read in full, whoever ran
        assert got is not None and (got.call, got.fd, got.socket) == ("recvfrom", fd, False)
        assert got == syscalls.blocked(p.pid, [])
    finally:
        p.kill()
        p.wait()
        reader.close()


# a parent with three children: one asleep, one that starts a thread when told, one spinning
TREE = """
import os, sys, threading, time
kids = []
for what in ("sleep", "thread", "spin"):
    pid = os.fork()
    if pid == 0:
        if what == "thread":
            sys.stdin.readline()
            threading.Thread(target=time.sleep, args=(30,)).start()
            print("started", flush=True)
        while what == "spin":
            pass
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
print(*kids, flush=True)
time.sleep(30)
"""


def test_the_trees_quiet_key_holds_for_a_sleeping_process_only() -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", TREE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tree = RealTree(p.pid)
    try:
        assert p.stdin is not None and p.stdout is not None
        asleep, threaded, spinning = map(int, p.stdout.readline().split())
        for pid in (asleep, threaded):
            _calls(pid, "clock_nanosleep" if pid == asleep else "read")

        def keys() -> dict[int, tuple[int, bytes] | None]:
            return {s.pid: s.quiet_key for s in tree.sample()}

        keys()  # the tree's first read: no key yet (its stat was read before its schedstat)
        first, second = keys(), keys()
        assert first[asleep] is not None and first[asleep] == second[asleep]
        assert first[threaded] is not None and first[threaded] == second[threaded]
        wait_until(lambda: keys()[spinning] != keys()[spinning])  # it runs: the key moves
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "started"
        # it ran and has two threads now: no key, the next tree read or not
        assert keys()[threaded] is None
        tree.refresh()
        assert keys()[threaded] is None
        assert keys()[asleep] == first[asleep]
    finally:
        tree.close()
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
