"""Queue wait of attached servers by eBPF tracepoints (readers.accepts_bpf), against
ground truth: a server whose accept queue is held for a known time.

Ground truth per connection: the client's clock around its send() (the bytes arrive on
loopback inside that call) and the time the server's accept() returned (a test server
that prints it), or, for real servers whose workers are SIGSTOPped, the time they were
continued and the time the response came back: causal bounds that load on the machine
can widen but never break.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from conftest import assert_all_gone, read_response, wait_until
from plumbing.loghist import index_of
from readers import accepts_bpf
from readers.accepts_bpf import AcceptCounter
from realservers import free_port, real_server  # noqa: F401 - the fixture
from sources.sampler import Sampler
from text import attach as attach_text
from values.snapshot import Snapshot

REASON = accepts_bpf.unavailable()
QREASON = accepts_bpf.queue_unavailable() if REASON is None else REASON
SLACK_US = 1000  # whole microseconds per value, and the client's clock reads around send()

HELD = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
print("listening", flush=True)
sys.stdin.readline()  # the test says when to accept
for _ in range(int(sys.argv[2])):
    c, _ = s.accept()
    print(c.getpeername()[1], time.monotonic(), flush=True)
    c.close()
"""


def test_the_kernel_side_bucket_index_equals_plumbing_loghist_index_of() -> None:
    """The bpftrace arithmetic (bit length by halving) against index_of, in one run."""
    if REASON is not None:
        pytest.skip(REASON)
    values = [0, 1, 15, 16, 17, 31, 32, 33, 100, 255, 256, 1000, 4095, 4096, 65535]
    values += [65536, 250_000, 999_999, 4_200_000, 134_217_727, 134_217_728, 10**9]
    prog = "BEGIN {\n"
    for v in values:
        prog += f"  $us = (uint64){v};\n{accepts_bpf.LOGHIST_INDEX}"
        prog += '  printf("i=%d\\n", $i);\n'
    prog += "  exit();\n}\n"
    out = subprocess.run(
        ["bpftrace", "-e", prog],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=accepts_bpf._child_setup,
        check=False,
    )
    got = [int(x[2:]) for x in out.stdout.split() if x.startswith("i=")]
    assert got == [index_of(v) for v in values], out.stderr


def test_without_the_sk_data_ready_tracepoint_the_reason_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events"
    (events / "syscalls").mkdir(parents=True)
    (events / "sock" / "inet_sock_set_state").mkdir(parents=True)
    monkeypatch.setattr(accepts_bpf, "unavailable", lambda: None)
    monkeypatch.setattr(accepts_bpf, "_ensure_tracefs", lambda: str(events / "syscalls"))
    reason = accepts_bpf.queue_unavailable()
    assert reason is not None and reason.startswith("unavailable: ")
    assert "sock:sk_data_ready" in reason
    (events / "sock" / "sk_data_ready").mkdir()
    assert accepts_bpf.queue_unavailable() is None


def test_queue_wait_per_connection_equals_the_time_its_bytes_waited_for_accept() -> None:
    """Three clients connect and send 120 ms apart while the server does not accept; a
    fourth connects and sends nothing; the server accepts 300 ms after the last. Each
    wait is accept time - send time (within 1 ms), the silent one's is 0, and the pid is
    the server's."""
    if QREASON is not None:
        pytest.skip(QREASON)
    port = free_port()
    srv = subprocess.Popen(
        [sys.executable, "-c", HELD, str(port), "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    counter = None
    clients: list[socket.socket] = []
    try:
        assert srv.stdout is not None and srv.stdin is not None
        assert srv.stdout.readline().strip() == "listening"
        counter = AcceptCounter(srv.pid, ports=(port,)).start()
        assert counter.measures_queue, counter.queue_note
        sent: dict[int, tuple[float, float]] = {}
        for i in range(4):
            c = socket.create_connection(("127.0.0.1", port))
            clients.append(c)
            before = time.monotonic()
            if i < 3:
                c.sendall(b"GET / HTTP/1.1\r\n\r\n")
                sent[c.getsockname()[1]] = (before, time.monotonic())
            time.sleep(0.12)  # the injected delay: the queue is held, this is no wait
        time.sleep(0.3)
        srv.stdin.write("go\n")
        srv.stdin.flush()
        accepted = {}
        for _ in range(4):
            port_s, at = srv.stdout.readline().split()
            accepted[int(port_s)] = float(at)
        srv.wait(10)
        counter.sync()
        waits = counter.queue_per_pid()
    finally:
        for c in clients:
            c.close()
        if counter is not None:
            counter.stop()
        if srv.poll() is None:
            srv.kill()
            srv.wait(5)
    assert list(waits) == [srv.pid]
    h = waits[srv.pid]
    assert h.count == 4
    lo = {p: (accepted[p] - after) * 1e6 for p, (_, after) in sent.items()}
    hi = {p: (accepted[p] - before) * 1e6 for p, (before, _) in sent.items()}
    assert min(lo.values()) > 300_000  # the delay was injected
    assert sum(lo.values()) - 3 * SLACK_US <= h.sum_us <= sum(hi.values()) + 3 * SLACK_US
    assert max(lo.values()) - SLACK_US <= h.max_us <= max(hi.values()) + SLACK_US
    assert dict(h.buckets).get(0) == 1  # the silent connection: its bytes came later
    for p in sent:  # each in its own bucket (120 ms apart): quantiles within 6.25%
        assert index_of(int((lo[p] + hi[p]) / 2)) in dict(h.buckets)
    assert_all_gone([srv.pid])


def _stop_hold_and_release(pids: list[int], port: int, hold_s: float) -> tuple[float, float]:
    """SIGSTOP `pids`, send a request, continue them after `hold_s`: the bounds (ms) of
    the time the request's bytes waited for accept()."""
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        wait_until(lambda: all(_state(p) in ("T", "t") for p in pids), 5, "the workers to stop")
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        before = time.monotonic()
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        after = time.monotonic()
        time.sleep(hold_s)  # the injected delay: the queue is held, this is no wait
    finally:
        cont = time.monotonic()
        for p in pids:
            os.kill(p, signal.SIGCONT)
    try:
        assert read_response(c).status in (200, 404)
        done = time.monotonic()
    finally:
        c.close()
    return (cont - after) * 1e3, (done - before) * 1e3


def _text(snap: Snapshot) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(attach_text.render(snap))
    return console.export_text()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("nginx", {"workers": 2}),
        ("apache", {"mpm": "prefork", "max_workers": 4, "start": 2}),
        ("node", {"workers": 2, "sched": "none"}),
        ("node", {"workers": 2, "sched": "rr"}),
    ],
    ids=["nginx", "apache-prefork", "node-sched-none", "node-round-robin"],
)
def test_attach_shows_the_queue_wait_of_a_request_held_by_stopped_workers(
    real_server,  # noqa: F811
    kind: str,
    kw: dict[str, object],
) -> None:
    """Every process that accepts (the workers; Node round robin's primary) SIGSTOPped
    for 400 ms while a request waits: the attached snapshot's queue wait (max, whole
    server and the accepting process's) lies between the causal bounds, and no other
    process shows one."""
    srv = real_server(kind, **kw)
    sampler = Sampler.attach(port=srv.port, exact_accepts=True)
    try:
        model = sampler.sample().model
        assert model is not None
        if model.queue_method is None:
            assert model.queue_note and model.queue_note.startswith("queue wait not measured")
            pytest.skip(model.queue_note)
        workers = [srv.root] if kw.get("sched") == "rr" else srv.children()
        lo, hi = _stop_hold_and_release(workers, srv.port, 0.4)
        sampler.source.reader.counter.sync()  # type: ignore[attr-defined]
        snap = sampler.sample()
    finally:
        sampler.close()
    assert snap.phases is not None and snap.phases.queue is not None
    assert snap.phases.server is None and snap.phases.service is None  # not seen from outside
    q = snap.phases.queue
    assert lo - 1 <= q.max_ms <= hi + 1, (lo, q, hi)
    held = [w for w in snap.workers if w.phases and w.phases.queue and w.phases.queue.count]
    assert [w.pid for w in held if w.phases.queue.max_ms >= lo - 1] != []  # type: ignore[union-attr]
    assert {w.pid for w in held} <= set(workers)  # by the ones that accept
    assert sum(w.phases.queue.count for w in held) == q.count  # type: ignore[union-attr]
    line = next(x for x in _text(snap).splitlines() if x.startswith("queue wait: "))
    assert f"max {q.max_ms:.1f} ms  ({q.count} connections)" in line


def test_attach_without_ebpf_has_no_phases_and_says_why_in_one_line(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("nginx", workers=1)
    sampler = Sampler.attach(port=srv.port, exact_accepts=False)
    try:
        snap = sampler.sample()
    finally:
        sampler.close()
    assert snap.model is not None
    assert snap.model.queue_method is None
    assert snap.model.queue_note == "queue wait not measured: eBPF not asked for (--exact-accepts)"
    assert snap.phases is None
    assert all(w.phases is None for w in snap.workers)
    assert snap.model.queue_note in _text(snap).splitlines()


def test_apache_prefork_starved_by_idle_keep_alive_clients_shows_queue_wait_in_seconds(
    real_server,  # noqa: F811
) -> None:
    """MaxRequestWorkers 2, KeepAliveTimeout 2 s: two clients make a request each and
    stay idle, so both children wait on them; a third request waits in the accept queue
    until a child's keep-alive times out. Its wait is at least 2 s after the earlier held
    request was sent (the timeout cannot end sooner) minus when it was sent, at most its
    whole latency: the attached snapshot's queue wait lies between, in seconds."""
    srv = real_server("apache", mpm="prefork", max_workers=2, start=2, keepalive_timeout=2)
    sampler = Sampler.attach(port=srv.port, exact_accepts=True)
    held: list[socket.socket] = []
    try:
        model = sampler.sample().model
        assert model is not None
        if model.queue_method is None:
            pytest.skip(model.queue_note or "")
        sent, quick = [], 0.0
        for _ in range(2):
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            held.append(c)
            sent.append(time.monotonic())
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(c).status == 200  # and it stays open, idle
            quick += time.monotonic() - sent[-1]
        with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as c:
            before = time.monotonic()
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            after = time.monotonic()
            assert read_response(c).status == 200
            done = time.monotonic()
        sampler.source.reader.counter.sync()  # type: ignore[attr-defined]
        snap = sampler.sample()
    finally:
        for c in held:
            c.close()
        sampler.close()
    lo = (min(sent) + 2.0 - after) * 1e3
    hi = (done - before) * 1e3
    assert snap.phases is not None and snap.phases.queue is not None
    q = snap.phases.queue
    assert q.count == 3
    assert lo - 1 <= q.max_ms <= hi + 1, (lo, q, hi)
    assert q.max_ms > 1000  # into seconds
    # the two that found an idle child waited no longer than their whole latency
    assert q.sum_us - q.max_us <= quick * 1e6 + 2 * SLACK_US
