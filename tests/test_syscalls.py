"""readers.syscalls on real processes: the call a thread is blocked in, its fd only for the
calls whose first argument is one (a sleep's first argument is a clock id), a socket told
by its fd's link."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import wait_until
from readers import syscalls

pytestmark = pytest.mark.timeout(30)

CHILD = """
import socket, sys, time
a, b = socket.socketpair()
print(a.fileno(), flush=True)
if sys.argv[1] == "recv":
    a.recv(1)
else:
    time.sleep(30)
"""


@pytest.mark.parametrize("what", ["recv", "sleep"])
def test_the_call_a_process_waits_in_and_its_fd(what: str) -> None:
    p = subprocess.Popen([sys.executable, "-c", CHILD, what], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        fd = int(p.stdout.readline())
        want = {"recv": "recvfrom", "sleep": "clock_nanosleep"}[what]
        wait_until(lambda: (b := syscalls.blocked(p.pid, [])) is not None and b.call == want)
        b = syscalls.blocked(p.pid, [])
        assert b is not None
        if what == "recv":
            assert (b.fd, b.socket) == (fd, True) and b.words() == f"in recvfrom on socket fd {fd}"
        else:
            assert (b.fd, b.socket, b.words()) == (None, None, "in clock_nanosleep")
        assert b.others_busy == 0 and not b.multiplexes
    finally:
        p.kill()
        p.wait()
