"""Exact accepts of an attached process and of its threads, sample after sample: each row's
interval figure is its own total's change, and a process's total is the sum of its
threads' in every sample. The eBPF counter is replaced by a scripted one (the flushes land
where the test says), on a real two-thread process listening on loopback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import wait_until
from sources.sampler import Sampler
from values.snapshot import Kind, Snapshot

SERVER = """
import socket, sys, threading, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
print(s.getsockname()[1], flush=True)
time.sleep(120)
"""


class ScriptedCounter:
    """AcceptCounter's reading side: `totals()` is the next state of `flushes` each time it
    is asked (a flush of bpftrace lands between any two looks), then stays at the last."""

    measures_queue = False
    queue_note = "not measured"

    def __init__(self, flushes: list[dict[tuple[int, int], int]]) -> None:
        self.flushes = flushes
        self.looks = 0

    def totals(self) -> dict[tuple[int, int], int]:
        at = min(self.looks, len(self.flushes) - 1)
        self.looks += 1
        return dict(self.flushes[at])

    def per_pid(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for (pid, _), n in self.totals().items():
            out[pid] = out.get(pid, 0) + n
        return out

    def flush(self, timeout: float) -> bool:
        """A sample's asked-for flush (AcceptCounter.flush): the script's flushes land at
        each look anyway."""
        return True

    def changes(self) -> None:
        return None

    def stop(self) -> None:
        pass


@pytest.fixture
def two_threads():
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        wait_until(lambda: len(os.listdir(f"/proc/{proc.pid}/task")) == 2, 5, "2 threads")
        other = next(int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid)
        yield proc.pid, other, port
    finally:
        proc.kill()
        proc.wait()


def _rows(snap: Snapshot, pid: int) -> tuple:
    proc = next(w for w in snap.workers if w.pid == pid and w.kind == Kind.PROCESS)
    threads = {w.tid: w for w in snap.workers if w.pid == pid and w.kind == Kind.THREAD}
    return proc, threads


def _sampled(pid: int, port: int, flushes: list[dict[tuple[int, int], int]], n: int) -> list:
    sampler = Sampler.attach(pid=pid, port=port)
    try:
        sampler.source.reader.counter = ScriptedCounter(flushes)  # type: ignore[attr-defined]
        return [sampler.sample() for _ in range(n)]
    finally:
        sampler.close()


def test_a_process_whose_two_threads_accept_counts_its_interval_from_its_own_total(
    two_threads,
) -> None:
    """The main thread's tid is its process's pid: kept under one key, the process's next
    interval was its total less its main thread's (the other thread's accepts again, every
    sample, with no accept at all)."""
    pid, other, port = two_threads
    still = {(pid, pid): 10, (pid, other): 5}
    snaps = _sampled(pid, port, [still], 4)
    for snap in snaps[1:]:
        proc, threads = _rows(snap, pid)
        assert proc.accepts_total == 15 and proc.accepts == 0, (proc.accepts, proc.accepts_total)
        assert {t: (w.accepts, w.accepts_total) for t, w in threads.items()} == {
            pid: (0, 10),
            other: (0, 5),
        }


def test_a_flush_between_the_reads_of_one_sample_loses_no_accept(two_threads) -> None:
    """One sample reads the counter once: a flush landing while it reads does not make the
    process's total disagree with its threads', nor drop that flush's accepts from the
    process's intervals (CI: a Node cluster's 120 accepts summed to 59-105)."""
    pid, _, port = two_threads
    flushes = [{}, {(pid, pid): 52}, {(pid, pid): 52}, {(pid, pid): 63}]
    snaps = _sampled(pid, port, flushes, 6)
    for snap in snaps:
        proc, threads = _rows(snap, pid)
        assert proc.accepts_total == sum(w.accepts_total or 0 for w in threads.values())
    proc_rows = [_rows(s, pid)[0] for s in snaps]
    assert sum(p.accepts or 0 for p in proc_rows[1:]) == proc_rows[-1].accepts_total == 63
