"""The tree's sample builds a thread row only for a multi-threaded process: a single-threaded
one's CPU and time of read go straight into its process row (250 workers: 250 objects a
sample built for nothing), and are still the task's own schedstat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import wait_until
from readers import realtree
from readers.realtree import RealTree

# a root (one thread) with a child that starts a second thread, both asleep
TREE = textwrap.dedent(
    """
    import os, sys, threading, time
    if os.fork() == 0:
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        print(os.getpid(), flush=True)
        time.sleep(60)
        os._exit(0)
    time.sleep(60)
    """
)


def _ran_ns(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def test_a_single_threaded_process_gets_no_thread_row_and_its_own_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        tree = RealTree(proc.pid, threads=True)
        wait_until(lambda: len(tree.sample()) == 2, 10, "the root and its child")
        built: list[int] = []
        real = realtree.TaskSample

        def counted(*a: object) -> realtree.TaskSample:
            built.append(int(a[0]))  # type: ignore[call-overload]
            return real(*a)  # type: ignore[arg-type]

        monkeypatch.setattr(realtree, "TaskSample", counted)
        for _ in range(3):  # the first read, the fast path, and a tree re-read
            before = time.monotonic()
            rows = {p.pid: p for p in tree.sample()}
            root, kid = rows[proc.pid], rows[child]
            assert root.cpu_ns == _ran_ns(proc.pid, proc.pid)  # asleep: it has not moved
            assert before <= root.at <= time.monotonic() and root.threads == ()
            assert len(kid.threads) == 2 and kid.cpu_ns == sum(t.cpu_ns or 0 for t in kid.threads)
            tree.refresh()
        assert set(built) == {child}  # thread rows for the two-thread child only
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
