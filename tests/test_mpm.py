"""The Apache MPMs (prefork, worker, event) and the Go shape (goroutines): pool adaptation,
keep-alive starvation and its cure, a listener that accepts only for an idle thread, and
balance across event loops."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from conftest import get, read_response, wait_until
from plumbing.tcpinfo import accept_queue
from servers import models
from servers.config import ConfigError, ServerConfig
from servers.slots import State


def queue_len(sock: socket.socket) -> int:
    q = accept_queue(sock)
    assert q is not None, "not a listening socket"
    return q[0]


def connect_and_send(port: int, n: int, path: str = "/") -> list[socket.socket]:
    """n keep-alive clients that each send one request and then hold the connection."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        socks.append(s)
    return socks


@contextmanager
def holding(port: int, n: int) -> Iterator[list[socket.socket]]:
    socks = connect_and_send(port, n)
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def answer_times(socks: list[socket.socket], t0: float, timeout: float) -> dict[int, float]:
    """Seconds after t0 at which each socket's response arrived, until `timeout` passes."""
    times: dict[int, float] = {}
    with selectors.DefaultSelector() as sel:
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
        deadline = time.monotonic() + timeout
        while len(times) < len(socks) and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                i = key.data
                assert read_response(socks[i]).status == 200
                times[i] = time.monotonic() - t0
                sel.unregister(socks[i])
    return times


def live(sup) -> list[int]:
    return [s.index for s in sup.read().live]


def bursts(samples: list[tuple[float, int]], gap: float = 0.5) -> list[int]:
    """Changes of a sampled count, grouped into bursts separated by `gap` s of no change."""
    out: list[int] = []
    last_n = samples[0][1]
    changed_at = -1e9
    for t, n in samples[1:]:
        if n != last_n:
            if t - changed_at > gap:
                out.append(0)
            out[-1] += n - last_n
            changed_at = t
        last_n = n
    return out


# -- prefork ---------------------------------------------------------------------------


def test_prefork_grows_under_keepalive_load_and_shrinks_back(start_server):
    sup = start_server(
        "prefork", start_servers=2, min_spare=2, max_spare=4, max_workers=10, keepalive_timeout=30
    )
    assert live(sup) == [0, 1]
    samples = [(time.monotonic(), len(live(sup)))]

    def sample_until(want: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while samples[-1][1] != want and time.monotonic() < deadline:
            time.sleep(0.05)
            samples.append((time.monotonic(), len(live(sup))))
        assert samples[-1][1] == want, f"pool stuck at {samples[-1][1]}, want {want}"

    with holding(sup.port, 40):  # they pin every child in keep-alive wait
        sample_until(10, timeout=15)  # 2 -> 3 -> 5 -> 9 -> 10 (MaxRequestWorkers)
        grew = bursts(samples)
        assert sup.read().model.spawns == 10
        assert grew[0] == 1 and max(grew) >= 2, grew  # 1, then 2, 4 ... a second
        assert all(b & (b - 1) == 0 for b in grew[:-1]), grew  # powers of two
        time.sleep(1.2)  # MaxRequestWorkers reached: no more
        assert len(live(sup)) == 10
        snap = sup.read()
        assert all(s.state == State.KEEPALIVE for s in snap.live), [s.state for s in snap.live]
    # the clients are gone: every child idles, and one a second is stopped
    samples[:] = [(time.monotonic(), 10)]
    sample_until(4, timeout=15)
    shrank = bursts(samples)
    assert all(b == -1 for b in shrank), shrank
    time.sleep(1.2)
    snap = sup.read()
    assert [s.index for s in snap.live] == [0, 1, 2, 3]  # the highest idle went first
    assert all(s.state == State.WAITING for s in snap.live)
    assert all(s.state == State.EMPTY for s in snap.slots[4:10])
    assert snap.model.deaths == 0 and snap.model.spawns == 10
    assert get(sup.port).status == 200


def test_prefork_keepalive_starvation_and_event_is_spared(start_server):
    ka = 1.5
    sup = start_server("prefork", max_workers=4, keepalive_timeout=ka)
    assert len(live(sup)) == 4  # StartServers 5 is lowered to MaxRequestWorkers
    t0 = time.monotonic()
    with holding(sup.port, 10) as socks:
        first = answer_times(socks, t0, timeout=ka * 0.7)
        assert len(first) == 4, first
        # the other six sit in the accept queue while four idle connections pin the pool
        wait_until(lambda: queue_len(sup.listeners[0]) == 6, 2, "six queued connections")
        wait_until(
            lambda: [s.state for s in sup.read().live] == [State.KEEPALIVE] * 4, 2, "K, K, K, K"
        )
        assert sup.read().totals()["open"] == 4
        # until keep-alive timeouts free the children: four more, then the last two
        rest = answer_times([s for i, s in enumerate(socks) if i not in first], t0, ka * 3 + 3)
        assert len(rest) == 6, rest
        assert all(t >= ka * 0.9 for t in rest.values()), rest
        assert sorted(rest.values())[-1] >= 2 * ka * 0.9, rest
        assert queue_len(sup.listeners[0]) == 0

    ev = start_server("event", workers=1, threads_per_child=4, keepalive_timeout=ka)
    t0 = time.monotonic()
    with holding(ev.port, 10) as socks:
        times = answer_times(socks, t0, timeout=ka * 0.9)
        assert len(times) == 10 and max(times.values()) < 1.0, times
        assert queue_len(ev.listeners[0]) == 0
        # all ten wait parked in the listener's loop; the four threads are free
        listener_slot = 4

        def parked() -> bool:
            snap = ev.read()
            return snap.slots[listener_slot].open == 10 and all(
                s.state == State.WAITING and s.open == 0 for s in snap.slots[:4]
            )

        wait_until(parked, 2, "ten parked connections and four idle threads")
        assert ev.read().slots[listener_slot].state == State.KEEPALIVE
        # a parked connection that becomes readable is served again, by a thread
        socks[3].sendall(b"GET /work?bytes=5 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert len(read_response(socks[3]).body) == 5
        # KeepAliveTimeout closes parked connections: the accounting balances
        wait_until(lambda: ev.read().totals()["open"] == 0, ka + 3, "parked connections to close")
        assert all(s.recv(1) == b"" for s in socks)
    totals = ev.read().totals()
    assert totals["accepted"] == 10 + 1 and totals["requests"] == 11 + 1  # + the start probe


# -- worker ----------------------------------------------------------------------------


def open_per_process(sup) -> dict[int, int]:
    count: Counter[int] = Counter()
    for s in sup.read().slots:
        count[s.group] += s.open
    return dict(count)


def test_worker_process_with_all_threads_busy_stops_accepting(start_server):
    sup = start_server("worker", workers=2, threads_per_child=2, keepalive_timeout=20)
    snap = sup.read()
    assert len(snap.slots) == 4 and [s.group for s in snap.slots] == [0, 0, 1, 1]
    assert len({s.tid for s in snap.slots}) == 4 and len({s.pid for s in snap.slots}) == 2
    held = []
    try:
        for _ in range(4):  # each pins a thread in keep-alive wait
            s = socket.create_connection(("127.0.0.1", sup.port), timeout=10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s).status == 200
            held.append(s)
        wait_until(lambda: open_per_process(sup) == {0: 2, 1: 2}, 2, "two per process")
        wait_until(
            lambda: all(s.state == State.KEEPALIVE for s in sup.read().slots), 2, "K, K, K, K"
        )
        # every thread busy: neither listener accepts, the fifth waits in the kernel's queue
        fifth = connect_and_send(sup.port, 1)[0]
        time.sleep(0.5)
        assert queue_len(sup.listeners[0]) == 1
        assert answer_times([fifth], time.monotonic(), 0.3) == {}
        # free a thread: its process (only) takes the waiting connection
        held.pop(0).close()
        assert len(answer_times([fifth], time.monotonic(), 3)) == 1
        held.append(fifth)
        wait_until(lambda: open_per_process(sup) == {0: 2, 1: 2}, 2, "still two per process")
        assert queue_len(sup.listeners[0]) == 0
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("model", ["worker", "event"])
def test_a_killed_child_is_one_death_and_its_whole_slot_group_is_replaced(start_server, model):
    sup = start_server(model, workers=2, threads_per_child=3)
    snap = sup.read()
    # child i's threads in slots 3i..3i+2; event's listener of child i after them, in 6 + i
    mine = [3, 4, 5, 7] if model == "event" else [3, 4, 5]
    assert [s.index for s in snap.slots if s.group == 1] == mine
    assert len({snap.slots[i].pid for i in mine}) == 1
    victim = snap.slots[3].pid
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: sup.read().model.deaths == 1, what="the death on the scoreboard")

    def replaced() -> bool:
        slots = sup.read().slots
        return all(slots[i].pid not in (0, victim) for i in mine) and all(
            slots[i].state == State.WAITING for i in mine
        )

    wait_until(replaced, 5, "the child's threads to be replaced")
    snap = sup.read()
    assert snap.model.deaths == 1 and snap.model.spawns == 3
    assert all(snap.slots[i].deaths == 1 for i in mine)
    assert all(s.deaths == 0 for s in snap.slots if s.group == 0)
    assert [get(sup.port).status for _ in range(6)] == [200] * 6


# -- goroutines ------------------------------------------------------------------------


def test_goroutines_balances_100_keepalive_connections_over_its_loops(start_server):
    sup = start_server("goroutines", workers=4)
    snap = sup.read()
    assert len(snap.slots) == 4 and len({s.tid for s in snap.slots}) == 4
    assert len({s.pid for s in snap.slots}) == 1 and snap.slots[0].pid == sup.root_pid
    before = snap.model.dispatches
    gate = threading.Barrier(100)
    socks: list[socket.socket] = []
    lock = threading.Lock()

    def client() -> None:
        s = socket.create_connection(("127.0.0.1", sup.port), timeout=20)
        with lock:
            socks.append(s)
        gate.wait()
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(s).status == 200

    threads = [threading.Thread(target=client) for _ in range(100)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        wait_until(lambda: sup.read().totals()["open"] == 100, 5, "100 open connections")
        per_loop = [s.open for s in sup.read().slots]
        assert max(per_loop) - min(per_loop) <= 1, per_loop
        assert sup.read().model.dispatches - before == 100
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: sup.read().totals()["open"] == 0, 5, "connections to close")
    # after closes, the fewest-open rule keeps the loops level
    for _ in range(3):
        with holding(sup.port, 8):
            wait_until(lambda: sup.read().totals()["open"] == 8, 5, "8 open")
            assert [s.open for s in sup.read().slots] == [2, 2, 2, 2]
        wait_until(lambda: sup.read().totals()["open"] == 0, 5, "connections to close")


@pytest.mark.solo
def test_goroutines_reports_the_gil_and_its_cpu_follows_it(start_server):
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    sup = start_server("goroutines", workers=4)
    assert sup.read().model.gil == gil
    proc = psutil.Process(sup.root_pid)
    stop = threading.Event()

    def client() -> None:
        with socket.create_connection(("127.0.0.1", sup.port), timeout=20) as s:
            buf = bytearray()
            while not stop.is_set():
                s.sendall(b"GET /work?cpu_ms=20 HTTP/1.1\r\nHost: t\r\n\r\n")
                assert read_response(s, buf).status == 200

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    c0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    time.sleep(2.0)
    cores = (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0)
    stop.set()
    for t in threads:
        t.join(10)
    loop_cpu = [th.user_time + th.system_time for th in proc.threads()]
    assert sum(1 for c in loop_cpu if c > 0.05) >= 4, loop_cpu  # every loop took work
    assert cores > 0.2, cores  # the load ran
    if gil:
        assert cores < 1.15, f"{cores:.2f} cores with the GIL"


# -- knobs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "knobs", "needle"),
    [
        ("prefork", {"max_spare": 3}, "--max-spare (MaxSpareServers) must be between --min-spare"),
        ("prefork", {"max_workers": 5000}, "--max-workers (MaxRequestWorkers) must be between 1"),
        ("prefork", {"threads_per_child": 4}, "no --threads-per-child"),
        ("worker", {"threads_per_child": 2000}, "(ThreadsPerChild) must be between 1 and 1024"),
        ("worker", {"workers": 50}, "must fit the scoreboard's 1024 slots, got 50 x 25 = 1250"),
        ("worker", {"max_workers": 400}, "no --max-workers"),
        ("event", {"workers": 40}, "got 40 x (25 + 1) = 1040"),
        ("event", {"async_factor": 500}, "--async-factor (AsyncRequestWorkerFactor) must be"),
        ("goroutines", {"threads_per_child": 4}, "no --threads-per-child"),
        ("goroutines", {"workers": 5000}, "--workers must be between 1 and 1024"),
    ],
)
def test_knobs_out_of_range_are_refused_in_one_line(model, knobs, needle):
    with pytest.raises(ConfigError) as e:
        models.spec(model).resolve(ServerConfig(model=model, **knobs))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_a_bad_knob_and_lists_all_nine():
    cmd = [sys.executable, "-m", "serverscope", "serve", "prefork", "--min-spare", "20"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "serverscope: --max-spare (MaxSpareServers) must be between --min-spare (20) and 1024,"
        " got 10"
    )
    out = subprocess.run(
        [sys.executable, "-m", "serverscope", "serve", "--list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    rows = out.stdout.splitlines()[: len(models.MODEL_NAMES)]  # the originals follow
    assert [ln.split()[0] for ln in rows] == list(models.MODEL_NAMES)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_a_resolved_config_leaves_no_knob_of_the_model_unset(name):
    spec = models.spec(name)
    cfg = spec.resolve(ServerConfig(model=name))
    assert all(getattr(cfg, k) is not None for k in spec.knobs), cfg
    if spec.shape is not None:  # the typed knobs the model's run reads agree with it
        knobs = spec.knobs_of(cfg)
        assert {k: getattr(knobs, k) for k in spec.defaults} == {
            k: getattr(cfg, k) for k in spec.defaults
        }
    given = spec.resolve(ServerConfig(model=name, **dict.fromkeys(spec.knobs & {"workers"}, 2)))
    if "workers" in spec.knobs:
        assert spec.knobs_of(given).workers == 2  # a value given wins over the default
