"""plumbing.process.readable: waits on an fd numbered past select()'s FD_SETSIZE.

A monitor of 1,024 workers keeps an fd per worker open, so the pidfd or pipe it waits on
at stop can be fd 1,100: select.select raised ValueError there and the stop of a
1,024-worker proc_spawn failed (seen with the sampler's kept fds, bench_sampler 1,024)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from plumbing.child import Child
from plumbing.process import readable


@pytest.fixture
def high_fd():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"fd hard limit {hard} < 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    r, w = os.pipe()
    hr, hw = os.dup2(r, 1500), os.dup2(w, 1501)
    os.close(r)
    os.close(w)
    try:
        yield hr, hw
    finally:
        os.close(hr)
        os.close(hw)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_fd_past_1024_is_waited_on(high_fd):
    r, w = high_fd
    assert readable(r, 0) is False
    os.write(w, b"x")
    assert readable(r, 1.0) is True


def test_a_child_is_waited_on_while_its_pidfd_is_past_1024(high_fd):
    held = []
    try:
        while not held or held[-1] < 1100:  # the lower fds taken: the pidfd lands past 1100
            held.append(os.open(os.devnull, os.O_RDONLY))
        child = Child(
            [sys.executable, "-c", "import sys; sys.stdin.read()"], name="t", stdin=subprocess.PIPE
        )
        assert child.wait(0.01) is False
        child.stdin.close()
        assert child.wait(10.0)
        child.close()
    finally:
        for fd in held:
            os.close(fd)
