"""SocketOwners leaves out the verification of a process that has not run since its last
one (readers.notrun), and still finds a socket handed over between two such processes
(no new inode in the dump: only the verification can see it move)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from conftest import wait_until
from readers import syscalls
from readers.notrun import NotRun
from readers.sockowners import SocketOwners

pytestmark = pytest.mark.timeout(30)

GIVER = """
import os, socket, sys
chan = socket.socket(fileno=int(sys.argv[2]))
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(os.readlink(f"/proc/self/fd/{c.fileno()}")[8:-1], flush=True)
sys.stdin.readline()
socket.send_fds(chan, [b"x"], [c.fileno()])
c.close()
print("given", flush=True)
sys.stdin.readline()
"""

TAKER = """
import socket, sys
chan = socket.socket(fileno=int(sys.argv[1]))
got = socket.recv_fds(chan, 16, 4)[1]
print("taken", flush=True)
sys.stdin.readline()
"""


def _sockets_of(pid: int) -> set[int]:
    """Ground truth: the socket inodes /proc/PID/fd links to now."""
    out = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def test_a_socket_handed_between_idle_processes_is_found_where_it_went() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    run = [sys.executable, "-c"]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    giver = subprocess.Popen(
        [*run, GIVER, str(lsock.getsockname()[1]), str(a.fileno())], pass_fds=[a.fileno()], **pipes
    )
    taker = subprocess.Popen([*run, TAKER, str(b.fileno())], pass_fds=[b.fileno()], **pipes)
    procs = [giver, taker]
    try:
        assert giver.stdout is not None and giver.stdin is not None
        assert taker.stdout is not None and taker.stdin is not None
        inode = int(giver.stdout.readline())
        served = lsock.accept()[0]
        pids = [giver.pid, taker.pid]
        owners = SocketOwners(verify_every=1)  # every pid verified at every update
        assert owners.update(pids, [inode]).by_pid[giver.pid] == {inode}
        wait_until(lambda: (owners.update(pids, [inode]), owners.quiet >= 4)[1])
        quiet = owners.quiet  # both idle: left out, and still right
        r = owners.update(pids, [inode])
        assert owners.quiet == quiet + 2 and r.by_pid == {giver.pid: {inode}, taker.pid: set()}
        giver.stdin.write("\n")
        giver.stdin.flush()
        assert giver.stdout.readline().strip() == "given"
        assert taker.stdout.readline().strip() == "taken"
        r = owners.update(pids, [inode])  # the same inode alive: only verifying shows it
        assert {p: s for p, s in r.by_pid.items()} == {giver.pid: set(), taker.pid: {inode}}
        assert {p: _sockets_of(p) & {inode} for p in pids} == r.by_pid
        served.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for s in (lsock, a, b):
            s.close()


def test_not_run_proves_nothing_for_a_process_that_ran_or_has_threads() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    threaded = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time; threading.Thread(target=time.sleep, "
            "args=(30,)).start(); print(1, flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    nr = NotRun()
    try:
        assert threaded.stdout is not None
        threaded.stdout.readline()
        # asleep: had it two threads and still ran, the test would prove nothing
        wait_until(
            lambda: (
                (syscalls.read_syscall(threaded.pid, threaded.pid) or ("",))[0] == "clock_nanosleep"
            )
        )
        for p in (busy.pid, threaded.pid):
            assert not nr.check(p)  # never marked
            nr.mark(p)
        wait_until(lambda: not nr.check(busy.pid))  # it runs: its schedstat moves
        assert not nr.check(threaded.pid)  # two threads: its schedstat is one thread's
    finally:
        for p in (busy, threaded):
            p.kill()
            p.wait()
        nr.close()
