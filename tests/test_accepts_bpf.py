"""Exact accepts by eBPF (bpftrace) against a serverscope model's own scoreboard."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import assert_all_gone, get, wait_until
from readers import accepts_bpf
from readers.accepts_bpf import AcceptCounter, BpfUnavailable

REASON = accepts_bpf.unavailable()


def test_the_reason_it_is_unavailable_names_the_fix_when_there_is_one() -> None:
    if REASON is None:
        assert os.geteuid() == 0
    else:
        assert REASON.startswith("unavailable: ")
        if "bpftrace is not installed" in REASON:
            assert "Debian package bpftrace" in REASON


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_accepts_per_worker_equal_the_models_own_accept_counts(start_server) -> None:
    sup = start_server("many_accepts", workers=3)
    root = sup.root_pid
    counter = AcceptCounter(root).start()
    bpf_pid = counter.proc.pid
    try:
        before = {s.pid: s.accepted for s in sup.scoreboard.read().slots if s.pid}
        n = 60
        for _ in range(n):
            assert get(sup.port).status == 200
        wait_until(
            lambda: (
                sum(s.accepted for s in sup.scoreboard.read().slots if s.pid) - sum(before.values())
                == n
            ),
            10,
            "the scoreboard to count the accepts",
        )
        counter.sync()
        after = {s.pid: s.accepted for s in sup.scoreboard.read().slots if s.pid}
        truth = {pid: after[pid] - before.get(pid, 0) for pid in after}
        got = counter.per_pid()
        assert sum(got.values()) == n, (got, truth, counter.totals())
        assert {p: c for p, c in got.items() if c} == {p: c for p, c in truth.items() if c}
        assert all(tid for (_, tid) in counter.totals())
    finally:
        counter.stop()
    assert_all_gone([bpf_pid])


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_a_pid_that_does_not_exist_counts_nothing_and_stops_cleanly() -> None:
    try:
        counter = AcceptCounter(2**22 + 7).start()
    except BpfUnavailable as e:  # pragma: no cover - depends on the machine
        pytest.skip(str(e))
    pid = counter.proc.pid
    try:
        counter.sync()
        assert counter.per_pid() == {}
    finally:
        counter.stop()
    assert_all_gone([pid])


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_bpftrace_does_not_outlive_a_caller_killed_without_stopping_it() -> None:
    code = (
        "import sys, os; sys.path[:0] = sys.argv[1:]\n"
        "from readers.accepts_bpf import AcceptCounter\n"
        "c = AcceptCounter(os.getpid()).start(); print(c.proc.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    out = subprocess.run([sys.executable, "-c", code, src], capture_output=True, text=True)
    pid = int(out.stdout.split()[0])
    assert_all_gone([pid], timeout=10)
