"""The stuck rule on real servers, read from outside through each worker's system call
(/proc/PID/syscall): an nginx worker holding one idle keep-alive client sits in
epoll_wait and is not stuck; a gunicorn sync worker holding half a request sits in a read
of that client's socket and is, said so."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from judging.stuck import StuckWatch
from realservers import RealServer, real_server  # noqa: F401 (a fixture)
from sources.sampler import Sampler
from test_realservers import _client
from values.snapshot import Snapshot, WorkerState
from values.stuck import Episode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]
STUCK_AFTER = 1.0


def watch_until(
    sampler: Sampler, pid_of: Callable[[Snapshot], int | None], *, span: float
) -> tuple[list[Snapshot], list[Episode]]:
    """Samples every 0.25 s until `span` seconds after `pid_of` first finds the worker
    that holds the client; the snapshots and the episodes StuckWatch found."""
    watch = StuckWatch(stuck_after=STUCK_AFTER)
    snaps: list[Snapshot] = []
    found: list[Episode] = []
    seen_at = None
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        snap = sampler.sample()
        snaps.append(snap)
        found += watch.step(snap)
        if seen_at is None and pid_of(snap) is not None:
            seen_at = snap.time
        if seen_at is not None and snap.time - seen_at > span:
            break
        time.sleep(0.25)
    assert seen_at is not None, "no worker seen holding the client"
    return snaps, found


def holder(snap: Snapshot) -> int | None:
    """The worker process holding exactly one connection, if one does."""
    ws = [w for w in snap.workers if w.is_worker and w.connections == 1]
    return ws[0].pid if len(ws) == 1 else None


def test_nginx_with_one_idle_keepalive_client_is_not_stuck(
    real_server: Callable[..., RealServer],  # noqa: F811
) -> None:
    """Seen before: `pid N stuck in keep-alive` after 1 s, the worker serving every other
    client all along (the old rule exempted only a worker holding more than one)."""
    srv = real_server("nginx", workers=2)
    client = _client(srv.port)  # served, then held idle
    sampler = Sampler.attach(pid=srv.root)
    try:
        snaps, found = watch_until(sampler, holder, span=3 * STUCK_AFTER)
    finally:
        sampler.close()
        client.close()
    held = [w for s in snaps for w in s.workers if w.is_worker and w.connections == 1]
    assert any(w.state == WorkerState.KEEPALIVE for w in held), held  # what made it a case
    assert not found, found
    calls = {w.blocked.call for w in held if w.blocked is not None}
    assert "epoll_wait" in calls or "epoll_pwait" in calls, calls


def test_gunicorn_sync_worker_holding_half_a_request_is_stuck_in_its_read(
    real_server: Callable[..., RealServer],  # noqa: F811
) -> None:
    srv = real_server("gunicorn", workers=2)
    client = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # the head never ends
    sampler = Sampler.attach(pid=srv.root)
    try:
        _, found = watch_until(sampler, holder, span=2 * STUCK_AFTER)
    finally:
        sampler.close()
        client.close()
    assert len(found) == 1, found
    e = found[0]
    assert e.pid in srv.children() and e.what == "reading", e
    assert e.blocked is not None and e.blocked.startswith(
        ("in recvfrom on socket fd", "in read on socket fd")
    ), e


def test_gunicorn_sync_workers_serving_a_steady_stream_are_not_stuck(
    real_server: Callable[..., RealServer],  # noqa: F811
) -> None:
    """Both sync workers answer one short request after another (Connection: close, 8
    closed-loop clients of the load generator, at most 8 s): read `working` in most
    samples, waiting in a few, they were reported stuck working (4 in 14 s under wrk).
    Each takes new connections all along: none is in one request."""
    from loadgen.levels import LoadLevel
    from loadgen.runner import LoadRunner

    srv = real_server("gunicorn", workers=2)
    sampler = Sampler.attach(pid=srv.root, exact_accepts=None)
    model = sampler.sample().model
    if model is None or model.accepts_method != "exact (eBPF)":  # each accept is the proof
        sampler.close()
        pytest.skip(f"accepts not counted by eBPF: {model and model.accepts_note}")
    watch = StuckWatch(stuck_after=STUCK_AFTER)
    found: list[Episode] = []
    busy = accepted = 0
    level = LoadLevel(clients=8, keepalive=False, ramp=0, duration=8)
    try:
        with LoadRunner(f"http://127.0.0.1:{srv.port}/", level):
            end = time.monotonic() + 5 * STUCK_AFTER
            while time.monotonic() < end:
                snap = sampler.sample()
                found += watch.step(snap)
                ws = [w for w in snap.workers if w.is_worker]
                busy += sum(1 for w in ws if w.busy)
                accepted += sum(w.accepts or 0 for w in ws)
                time.sleep(0.25)
    finally:
        sampler.close()
    assert accepted > 100 and busy >= 8, (accepted, busy)  # the workers were busy
    assert found == [], found
