"""readers.blockedreader on real processes: a process that has not run since it was read
is not read again, and what it reads is always what readers.syscalls reads afresh: a
process that moved on to another call is seen at once, and one with several threads is
read in full (another thread may change the fd its main thread waits on)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import wait_until
from readers import syscalls
from readers.blockedreader import BlockedReader

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
