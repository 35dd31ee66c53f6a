"""The tree re-read keeps what a process that has not run since cannot have changed (its
children, its kept stat), and still finds a grandchild the moment its parent forks it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import wait_until
from readers import realtree
from readers.realtree import RealTree

# the root forks a child that sleeps reading a pipe; a line on the root's stdin makes the
# child fork a grandchild (which sleeps)
TREE = textwrap.dedent(
    """
    import os, sys, time
    r, w = os.pipe()
    if os.fork() == 0:
        os.close(w)
        os.read(r, 1)
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        time.sleep(60)
        os._exit(0)
    os.close(r)
    print(os.getpid(), flush=True)
    sys.stdin.readline()
    os.write(w, b"x")
    time.sleep(60)
    """
)


def test_an_idle_child_keeps_its_children_and_a_forking_one_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        root = int(proc.stdout.readline())
        tree = RealTree(root)
        wait_until(lambda: len(tree.sample()) == 2, 10, "the root and its child")
        child = tree.pids[0]
        read: list[int] = []
        real = realtree.children_of
        monkeypatch.setattr(realtree, "children_of", lambda pid: read.append(pid) or real(pid))

        def kept() -> bool:  # once it sleeps (just forked, it ran), its children are kept
            read.clear()
            tree._read_at = -1e18  # the periodic re-read, due
            tree.sample()
            return child not in read and tree.pids == [child]

        wait_until(kept, 10, "the sleeping child's children kept")
        proc.stdin.write("go\n")
        proc.stdin.flush()

        def grandchild() -> bool:
            tree._read_at = -1e18
            tree.sample()
            return len(tree.pids) == 2

        wait_until(grandchild, 10, "the grandchild in the tree")
        assert child in read  # it ran: read again
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
