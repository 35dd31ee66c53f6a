"""Judgements on real servers (issue 22): a stopped reuseport worker is named for what it
is, on real nginx and on the lab's own reuseport model, and the healthy worker that takes
its share is not blamed for a skew."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from conftest import wait_until
from judging.analyser import Analyser
from lab.session import Session
from realservers import real_server  # noqa: F401 - the fixture
from servers.config import ServerConfig
from sources.sampler import Sampler
from values.snapshot import Snapshot

pytestmark = pytest.mark.slow


def _connect_for(port: int, seconds: float, stop: threading.Event, held: list) -> None:  # type: ignore[type-arg]
    """New connections, one request each, ~25 a second for `seconds`: those the kernel
    hashes to the stopped worker's queue wait there (kept open, never read)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.is_set():
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=2)
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            held.append(c)
        except OSError:
            pass
        stop.wait(0.04)


def _judged_under_load(port: int, victim: int, sampler: Sampler, seconds: float) -> list[Snapshot]:
    """Sample (4 Hz, analysed) while new connections arrive for `seconds`."""
    analyser, snaps = Analyser(), []
    stop, held = threading.Event(), []  # type: ignore[var-annotated]
    t = threading.Thread(target=_connect_for, args=(port, seconds, stop, held))
    t.start()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            snaps.append(analyser.annotate(sampler.sample()))
            time.sleep(0.25)
    finally:
        stop.set()
        t.join(10)
        for c in held:
            c.close()
    return snaps


def _check(snaps: list[Snapshot], victim_label: str) -> None:
    rules = [[d.rule for d in s.diagnoses] for s in snaps]
    # the healthy worker took every accept: never blamed for it
    skews = [d.message for s in snaps for d in s.diagnoses if d.rule == "accept_skew"]
    assert skews == [], skews
    last = snaps[-1]
    assert rules[-1] and rules[-1][0] == "stalled_owner", rules[-1]
    msg = last.diagnoses[0].message
    assert msg.startswith(f"stalled worker: {victim_label} is stopped (/proc state T) with "), msg
    assert "connections in its own reuseport queue on port " in msg, msg
    assert "the oldest waiting >= " in msg, msg
    # the wait it cites is no more than the time since the stop (a lower bound, never more)
    waited = float(msg.split("the oldest waiting >= ")[1].split(" s")[0])
    assert 1 <= waited <= len(snaps) * 0.25 + 1, msg


def test_a_stopped_nginx_reuseport_worker_is_named_and_the_healthy_one_not_blamed(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("nginx", workers=2, reuseport=True)
    sampler = Sampler.attach(port=srv.port)
    victim = 0
    try:
        wait_until(
            lambda: all(len(ln.owners) == 1 for ln in sampler.sample().listeners),
            10,
            "one epoll owner per reuseport listener",
        )
        victim = srv.children()[0]
        os.kill(victim, signal.SIGSTOP)
        snaps = _judged_under_load(srv.port, victim, sampler, 5.0)
        _check(snaps, f"pid {victim}")
    finally:
        if victim:
            os.kill(victim, signal.SIGCONT)
        sampler.close()


def test_the_lab_reuseport_model_with_a_paused_worker_reads_the_same() -> None:
    """The `hol` demo's first step: worker 0 of the lab's reuseport model paused (the
    session's SIGSTOP), new connections hashed to every queue."""
    from conftest import assert_all_gone

    session = Session(ServerConfig(model="reuseport", workers=2), None)
    session.start()
    try:
        sup = session.supervisor
        assert sup is not None and session.sampler is not None
        pids = sup.pids()
        victim = sup.read().slots[0].pid
        session.pause_worker(victim)
        snaps = _judged_under_load(sup.port, victim, session.sampler, 5.0)
        _check(snaps, "worker 0")
        stopped = [w for w in snaps[-1].workers if w.pid == victim]
        assert stopped and all(w.state == "stopped" and w.proc_state == "T" for w in stopped)
    finally:
        session.close()
    assert_all_gone(pids)


def test_an_attached_multi_threaded_process_s_cpu_is_its_threads_not_more() -> None:
    """A process with two threads spinning (and its main thread asleep): attached, its CPU
    is its threads' sum, at most its two threads' worth. Its main thread (tid = pid) and
    the process shared one key for the CPU deltas, so the process's read the whole
    process's CPU minus the main thread's, per interval: an Apache event child at 53%
    read 2,203% (the skew rule takes >= 90% of a core for saturated)."""
    import subprocess
    import sys

    from conftest import assert_all_gone

    code = (
        "import socket, threading, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1])\n"
        "def spin():\n"
        "    while True: pass\n"
        "for _ in range(2): threading.Thread(target=spin, daemon=True).start()\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        sampler = Sampler.attach(port=port)
        try:
            snaps = []
            for _ in range(8):
                snaps.append(sampler.sample())
                time.sleep(0.25)
        finally:
            sampler.close()
        for s in snaps[2:]:
            [me] = [w for w in s.workers if w.pid == proc.pid and w.kind == "process"]
            threads = [w for w in s.workers if w.pid == proc.pid and w.kind == "thread"]
            assert me.cpu_percent is not None and threads
            summed = sum(t.cpu_percent or 0.0 for t in threads)
            assert me.cpu_percent <= 200.0 + 25.0, (me.cpu_percent, summed)
            assert abs(me.cpu_percent - summed) <= 25.0 + 0.2 * summed, (me.cpu_percent, summed)
    finally:
        proc.kill()
        proc.wait()
    assert_all_gone([proc.pid])
