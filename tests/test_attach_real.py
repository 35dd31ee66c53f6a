"""`Sampler.attach` through the lab's Watch on real servers (issue 14): the snapshots and
diagnoses an attached real server gets, against ground truth (ss -tnp, the tree, the
client)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from conftest import wait_until
from lab.watch import Watch
from realservers import real_server  # noqa: F401 - the fixture
from sources.sampler import Sampler
from test_realservers import _client, _ss_per_pid, needs_ss
from values.snapshot import Hold, Role, Snapshot, WorkerState

PERIOD = 0.25
CLI = [sys.executable, "-m", "serverscope", "attach"]


class Watching:
    """The lab's Watch over an attached server, run every PERIOD in a thread;
    `until(cond)` waits for a snapshot satisfying cond."""

    def __init__(self, sampler: Sampler) -> None:
        self.snaps: list[Snapshot] = []
        self.watch = Watch(sampler, observers=[self.snaps.append])
        self._stop = threading.Event()
        self._t = threading.Thread(target=self.watch.run, args=(PERIOD, self._stop))
        self._t.start()

    def last(self) -> Snapshot:
        wait_until(lambda: bool(self.snaps), 5, "a snapshot")
        return self.snaps[-1]

    def until(self, cond: Callable[[Snapshot], bool], timeout: float, what: str) -> Snapshot:
        start = len(self.snaps)
        wait_until(lambda: any(cond(s) for s in self.snaps[start:]), timeout, what)
        return next(s for s in self.snaps[start:] if cond(s))

    def close(self) -> None:
        self._stop.set()
        self._t.join(10)
        self.watch.close()


def _rules(s: Snapshot) -> dict[str, str]:
    return {d.rule: d.message for d in s.diagnoses}


def _silent(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _requesting(port: int) -> socket.socket:
    c = _silent(port)
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    return c


def test_apache_prefork_pinned_by_keepalive_clients_is_diagnosed_as_starvation_from_outside(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("apache", mpm="prefork", max_workers=8, start=8, keepalive_timeout=30)
    clients = [_client(srv.port) for _ in range(8)]  # served, then held idle (keep-alive)
    # 4 more send a request (as a timing-out curl does) and wait in the accept queue; silent
    # ones would not show there: Apache's listener defers accept until data arrives
    clients += [_requesting(srv.port) for _ in range(4)]
    w = Watching(Sampler.attach(port=srv.port))
    try:
        snap = w.until(lambda s: "starvation" in _rules(s), 10, "starvation")
        msg = _rules(snap)["starvation"]
        assert "8/8 workers busy" in msg and "KeepAliveTimeout" in msg and "event MPM" in msg
        assert snap.model is not None and snap.model.server == "apache-prefork"
        workers = snap.live_workers
        assert len(workers) == 8 and all(x.connections == 1 for x in workers)
        # each socket shows a response went out and nothing since: keep-alive, not
        # "reading" (what the outside view said before it read tcp_info)
        assert all(x.state == WorkerState.KEEPALIVE for x in workers)
        assert all(x.hold == Hold.KEEPALIVE for x in workers)
        assert snap.queue >= 1
    finally:
        w.close()
        for c in clients:
            c.close()


def test_apache_event_with_the_same_idle_clients_is_not_starving(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("apache", mpm="event", max_workers=8, start=2, keepalive_timeout=30)
    clients = [_client(srv.port) for _ in range(12)]
    w = Watching(Sampler.attach(port=srv.port))
    try:
        # 2 s of samples: more than the 1 s starvation needs to fire
        w.until(lambda s: sum((x.interval_s or 0) for x in w.snaps) >= 2.0, 10, "2 s")
        assert not [s for s in w.snaps if "starvation" in _rules(s)]
        last = w.last()
        assert last.model is not None and last.model.server == "apache-threaded"
        assert sum(x.connections or 0 for x in last.live_workers) == 12
        assert any(x.folded for x in last.workers)  # per-thread rows
    finally:
        w.close()
        for c in clients:
            c.close()


def test_gunicorn_sync_pinned_by_silent_clients_is_diagnosed_as_starvation(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("gunicorn", worker_class="sync", workers=2)
    clients = [_silent(srv.port) for _ in range(5)]  # 2 pinned, 3 queued
    w = Watching(Sampler.attach(port=srv.port))
    try:
        snap = w.until(lambda s: "starvation" in _rules(s), 10, "starvation")
        msg = _rules(snap)["starvation"]
        assert "2/2 workers busy" in msg and "gthread" in msg, msg
        assert snap.model is not None and snap.model.server == "gunicorn-sync"
        assert Counter(x.role for x in snap.workers if x.kind == "process") == {
            Role.MASTER: 1,
            Role.WORKER: 2,
        }
    finally:
        w.close()
        for c in clients:
            c.close()


def test_uvicorn_2_workers_read_as_2_workers_1_helper_and_imbalance_over_the_2(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("uvicorn", workers=2)
    clients = [_client(srv.port) for _ in range(6)]
    w = Watching(Sampler.attach(port=srv.port))
    try:
        snap = w.until(
            lambda s: s.imbalance.connections is not None and s.imbalance.connections.n > 0,
            5,
            "a connections imbalance",
        )
        roles = Counter(x.role for x in snap.workers if x.kind == "process")
        assert roles == {Role.MASTER: 1, Role.WORKER: 2, Role.HELPER: 1}
        # multiprocessing's resource tracker holds no socket: it waits for no connection
        # (it was drawn `_ waiting`)
        helper = next(x for x in snap.workers if x.role == Role.HELPER)
        assert helper.state == WorkerState.UNKNOWN, helper
        assert snap.imbalance.connections is not None and snap.imbalance.connections.n == 2
        assert sum(x.connections or 0 for x in snap.live_workers) == 6
    finally:
        w.close()
        for c in clients:
            c.close()


@pytest.mark.parametrize("exact", [False, True], ids=["estimate", "exact"])
def test_node_sched_none_burst_per_worker_accepts_add_up_to_what_the_client_opened(
    real_server,  # noqa: F811
    exact: bool,
) -> None:
    srv = real_server("node", workers=2, sched="none")
    sampler = Sampler.attach(port=srv.port, exact_accepts=exact)
    model = sampler.sample().model
    assert model is not None
    if exact and model.accepts_method != "exact (eBPF)":
        sampler.close()
        pytest.skip(f"eBPF: {model.accepts_note}")
    assert model.accepts_method == ("exact (eBPF)" if exact else "estimate")
    w = Watching(sampler)
    n = 120
    clients = []
    try:
        w.last()
        for _ in range(n):
            clients.append(_client(srv.port))
        held = len(w.snaps)  # held over two samples (the estimate needs that): awaited
        wait_until(lambda: len(w.snaps) >= held + 2, 5, "two samples with every client")
        for c in clients:
            c.close()
        if exact:
            src_counter = sampler.source.reader.counter  # type: ignore[attr-defined]
            src_counter.sync()
        seen = len(w.snaps)
        wait_until(lambda: len(w.snaps) >= seen + 2, 5, "two more samples")
    finally:
        for c in clients:
            c.close()
        w.close()
    per: Counter[int] = Counter()
    for s in w.snaps:
        for x in s.workers:
            if x.role == Role.WORKER and x.kind == "process":
                per[x.pid] += x.accepts or 0
    total = sum(per.values())
    if exact:
        assert total == n, per
    else:
        assert abs(total - n) <= n * 0.1, per
    assert set(per) <= set(srv.children())


def test_a_sigstopped_nginx_reuseport_worker_is_named_stopped_with_its_own_growing_queue(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("nginx", workers=2, reuseport=True)
    w = Watching(Sampler.attach(port=srv.port))
    clients = []
    victim = 0
    try:
        snap = w.until(
            lambda s: len(s.listeners) == 2 and all(len(ln.owners) == 1 for ln in s.listeners),
            5,
            "one owner per reuseport listener",
        )
        victim = snap.live_workers[0].pid
        own = next(ln for ln in snap.listeners if ln.owners == (victim,))
        assert next(x for x in snap.live_workers if x.pid == victim).listener == own.index
        os.kill(victim, signal.SIGSTOP)
        w.until(
            lambda s: any(x.pid == victim and x.state == WorkerState.STOPPED for x in s.workers),
            5,
            "the stopped state",
        )
        for _ in range(40):
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            clients.append(c)
        # named as a backed-up queue, then (stopped >= 1 s) as the stalled worker it is
        snap = w.until(lambda s: "stalled_owner" in _rules(s), 5, "stalled_owner")
        assert _rules(snap)["stalled_owner"].startswith(f"stalled worker: pid {victim} is stopped")
        mine = next(ln for ln in snap.listeners if ln.inode == own.inode)
        assert mine.queue >= 10 and mine.owners == (victim,)
        stopped = next(x for x in snap.workers if x.pid == victim)
        assert stopped.glyph == "T" and stopped.proc_state == "T"
        others = [x for x in snap.live_workers if x.pid != victim]
        assert others and all(x.state != WorkerState.STOPPED for x in others)
    finally:
        if victim:
            os.kill(victim, signal.SIGCONT)
        w.close()
        for c in clients:
            c.close()


@needs_ss
@pytest.mark.parametrize(
    ("kind", "kw"),
    [
        ("nginx", {"workers": 2}),  # keepalive_timeout 30s
        ("apache", {"mpm": "prefork", "max_workers": 6, "start": 4, "keepalive_timeout": 60}),
        ("gunicorn", {"worker_class": "gthread", "workers": 2, "keepalive": 60}),
    ],
)
def test_attached_per_worker_connections_equal_ss_tnp(real_server, kind, kw) -> None:  # noqa: F811
    # the 5 clients are held open across the attach (seconds on a busy machine): the
    # servers keep an idle connection longer than that (gunicorn's default is 2 s)
    srv = real_server(kind, **kw)
    clients = [_client(srv.port) for _ in range(5)]
    sampler = Sampler.attach(port=srv.port)
    try:
        snap = sampler.sample()
        mine = {x.pid: x.connections for x in snap.workers if x.connections}
        assert mine == _ss_per_pid(srv.port)
        assert sum(mine.values()) == 5
        # threads never carry connections (unknown), so nothing is counted twice
        assert all(x.connections is None for x in snap.workers if x.folded)
    finally:
        sampler.close()
        for c in clients:
            c.close()


def test_node_round_robin_master_holding_accepted_connections_counts_as_dispatching(
    real_server,  # noqa: F811
) -> None:
    """The round-robin primary accepts and passes handles on: its new connections are the
    model's dispatches, so master_bottleneck can be judged; it is never a worker."""
    srv = real_server("node", workers=2, sched="rr")
    w = Watching(Sampler.attach(port=srv.port))
    clients = []
    try:
        w.last()
        for _ in range(40):
            clients.append(_client(srv.port))
        snap = w.until(
            lambda s: s.model is not None and (s.model.dispatches or 0) > 0, 5, "dispatches"
        )
        assert snap.model is not None and snap.model.server == "node-cluster-rr"
        assert any((s.model.dispatches_delta or 0) > 0 for s in w.snaps if s.model)
        assert snap.model.dispatches <= 40  # type: ignore[operator]
        assert srv.root not in {x.pid for x in snap.live_workers}
    finally:
        w.close()
        for c in clients:
            c.close()


def test_apache_prefork_states_come_from_mod_status_when_it_answers(
    real_server,  # noqa: F811
) -> None:
    """Auto-detected at /server-status: the workers' states are Apache's own glyphs, and
    the idle ones agree with IdleWorkers."""
    srv = real_server("apache", mpm="prefork", max_workers=6, start=4, keepalive_timeout=30)
    clients = [_client(srv.port) for _ in range(2)]  # 2 in keep-alive (K)
    w = Watching(Sampler.attach(port=srv.port, status_url="auto"))
    try:
        snap = w.until(
            lambda s: s.model is not None and (s.model.status or "").startswith("mod_status"),
            5,
            "mod_status read",
        )
        assert snap.model is not None and snap.model.status is not None
        states = Counter(x.state for x in snap.live_workers)
        # the status request itself is served by one worker (reading/writing) at its read
        assert states[WorkerState.KEEPALIVE] == 2, states
        idle = int(snap.model.status.split(" busy, ")[1].split(" idle")[0])
        assert states[WorkerState.WAITING] == idle, (states, snap.model.status)
    finally:
        w.close()
        for c in clients:
            c.close()


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--table", "--json"], "--table draws the table"),
        (["--status-url", "localhost/x"], "give an http:// URL"),
    ],
)
def test_attach_rejects_contradictory_flags_in_one_line(args: list[str], why: str) -> None:
    r = subprocess.run(
        [*CLI, "--port", "1", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_attach_table_once_draws_the_accepts_method_and_the_stopped_state(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("nginx", workers=2, reuseport=True)
    victim = srv.children()[0]
    os.kill(victim, signal.SIGSTOP)
    try:
        r = subprocess.run(
            [*CLI, "--port", str(srv.port), "--table", "--once", "--estimate-accepts"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        os.kill(victim, signal.SIGCONT)
    assert r.returncode == 0, r.stderr
    assert "accepts: estimate" in r.stdout
    row = next(
        line for line in r.stdout.splitlines() if f" {victim} " in line and "process" in line
    )
    assert "T stopped" in row


def test_attach_load_drives_a_bounded_loopback_load_at_the_server(
    real_server,  # noqa: F811
) -> None:
    """`--load burst --once --json`: the snapshot carries the load generator's live figures
    and the workers' accepts (estimate) saw its connections; nothing is left running."""
    srv = real_server("nginx", workers=2)
    args = ["--load", "burst", "--once", "--json", "--estimate-accepts", "--period", "1.5"]
    r = subprocess.run(
        [*CLI, "--port", str(srv.port), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    snap = Snapshot.from_dict(json.loads(r.stdout))
    assert snap.client is not None and snap.client.requests > 0
    # burst: 20 clients, each holding one connection (some may still be in the queue)
    assert 0 < sum(x.connections or 0 for x in snap.live_workers) + snap.queue <= 20, r.stdout


def test_the_estimate_says_how_many_connections_it_missed(real_server) -> None:  # noqa: F811
    """Connections that open and close between two samples are never seen by the
    estimate (new connections at samples): its note says how many it saw of those the
    namespace took (Tcp PassiveOpens), where it read as if it had counted them all.
    Seen by review: 11 seen of ~10,000 under wrk, the note silent."""
    srv = real_server("http.server")
    sampler = Sampler.attach(port=srv.port, exact_accepts=False)
    try:
        first = sampler.sample().model
        assert first is not None and "saw " not in (first.accepts_note or "")
        for _ in range(40):  # each opened, answered and closed before the next sample
            with socket.create_connection(("127.0.0.1", srv.port)) as c:
                c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                while c.recv(65536):
                    pass
        snap = sampler.sample()
    finally:
        sampler.close()
    assert snap.model is not None and snap.model.accepts_method == "estimate"
    m = re.search(r"saw (\d+) of the ([\d,]+) connections", snap.model.accepts_note or "")
    assert m is not None, snap.model.accepts_note
    # the namespace took ours and maybe others' (tests beside this one): at least 40
    assert int(m[1]) == 0 and int(m[2].replace(",", "")) >= 40, m[0]
    totals = [w.accepts_total for w in snap.workers if w.role == Role.WORKER]
    assert totals and all(t == 0 for t in totals), totals  # what it saw: none of them
