"""What `attach` says about real servers, against what the server and the kernel say
(ss, mod_status, the clients the test holds): the monitor adds nothing to the queue it
reports, `--once` has the samples its rules need, unknown is never zero, the starvation
line says what holds the workers, and the server is named from its executable."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter

import pytest

from conftest import wait_until
from readers import modstatus
from realservers import real_server  # noqa: F401 - the fixture
from sources.realattach import RealServerReader
from sources.sampler import Sampler
from test_attach_real import Watching, _requesting, _rules, _silent
from test_realservers import SS, _client, _ss_per_pid, needs_ss
from values.snapshot import Hold, Kind, Snapshot, WorkerState

CLI = [sys.executable, "-m", "serverscope", "attach"]
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _ss_count(*args: str) -> int:
    out = subprocess.run([SS or "ss", "-H", *args], capture_output=True, text=True, check=True)
    return len(out.stdout.splitlines())


def _ss_queue(port: int) -> int:
    """The accept queue's length as ss prints it (Recv-Q of the LISTEN socket)."""
    out = subprocess.run(
        [SS or "ss", "-Hltn", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[1])


def _once(*args: str, user: list[str] | None = None) -> Snapshot:
    """`attach ... --once --json --estimate-accepts` (no bpftrace: seconds quicker)."""
    r = subprocess.run(
        [*(user or []), *CLI, *args, "--once", "--json", "--estimate-accepts"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return Snapshot.from_dict(json.loads(r.stdout))


@needs_ss
@pytest.mark.slow
def test_a_starved_prefork_is_not_polled_and_once_names_starvation_adding_nothing(
    real_server,  # noqa: F811
) -> None:
    """MaxRequestWorkers 8, 8 keep-alive clients and 6 waiting: mod_status is never asked
    (its request would join the 6, as it did: 6 -> 10 in 8 s), `--once` names starvation
    (it sampled 0.5 s, the rule needs 1 s) and adds nothing to the queue (its probe did)."""
    srv = real_server("apache", mpm="prefork", max_workers=8, start=8, keepalive_timeout=30)
    clients = [_client(srv.port) for _ in range(8)]
    clients += [_requesting(srv.port) for _ in range(6)]
    w = None
    try:
        wait_until(lambda: _ss_queue(srv.port) == 6, 5, "6 clients in the accept queue")
        snap = _once("--port", str(srv.port))
        assert "starvation" in _rules(snap), snap.diagnoses
        assert snap.queue == 6 and _ss_queue(srv.port) == 6  # its own probe used to add 1
        url = f"http://127.0.0.1:{srv.port}/server-status"
        w = Watching(Sampler.attach(port=srv.port, status_url=url))
        w.until(lambda s: sum(x.interval_s or 0 for x in w.snaps) >= 2.5, 15, "2.5 s of samples")
        last = w.last()
        assert last.model is not None and last.model.status is not None
        assert "mod_status paused: the server has no free worker" in last.model.status
        assert _ss_queue(srv.port) == 6 and last.queue == 6  # the old poller: 7 at once, 8 at 2 s
        # a connection of the monitor's own that does wait is told by its 4-tuple
        own = socket.socket()
        own.bind(("127.0.0.1", 0))
        own.connect(("127.0.0.1", srv.port))
        own.sendall(b"GET /server-status HTTP/1.1\r\nHost: t\r\n\r\n")
        clients.append(own)
        wait_until(lambda: _ss_queue(srv.port) == 7, 5, "ours queued too")
        with RealServerReader(srv.root, [srv.port]) as rd:
            r = rd.read(own=[own.getsockname()])
            assert [x.queue for x in r.listeners] == [6] and r.own_seen == {own.getsockname()}
            assert [x.queue for x in rd.read().listeners] == [7]  # not told: counted
    finally:
        if w is not None:
            w.close()
        for c in clients:
            c.close()


@pytest.mark.slow
def test_once_names_starvation_of_gunicorn_sync_and_the_half_sent_requests_that_pin_it(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("gunicorn", worker_class="sync", workers=2)
    clients = []
    for _ in range(5):  # 2 pinned, 3 queued: each sent a request line, then nothing
        c = _silent(srv.port)
        c.sendall(b"GET / HTTP/1.1\r\n")
        clients.append(c)
    try:
        snap = _once("--port", str(srv.port))
        msg = _rules(snap).get("starvation", "")
        assert "2/2 workers busy" in msg and "stopped half-way" in msg, snap.diagnoses
        assert "keep-alive" not in msg and "--timeout" in msg and "buffers whole requests" in msg
        assert [x.hold for x in snap.live_workers] == [Hold.PARTIAL, Hold.PARTIAL]
        assert all(x.state == WorkerState.READING for x in snap.live_workers)
    finally:
        for c in clients:
            c.close()


def test_http_server_pinned_by_a_client_that_sends_nothing_says_so(
    real_server,  # noqa: F811
) -> None:
    """Python's one-thread HTTPServer: a silent client pins it; the line says silent,
    not keep-alive, and the fix is a timeout or a buffering proxy."""
    srv = real_server("http.server")
    clients = [_silent(srv.port) for _ in range(3)]  # 1 held, 2 queued
    w = Watching(Sampler.attach(port=srv.port))
    try:
        snap = w.until(lambda s: "starvation" in _rules(s), 10, "starvation")
        msg = _rules(snap)["starvation"]
        assert "silent since they opened" in msg and "keep-alive" not in msg, msg
        assert "`timeout`" in msg and "buffers whole requests" in msg, msg
        assert snap.model is not None and snap.model.server == "python-http.server"
        assert [x.hold for x in snap.live_workers] == [Hold.SILENT]
    finally:
        w.close()
        for c in clients:
            c.close()


def _glyph_states(st: modstatus.ModStatus) -> Counter[WorkerState]:
    return Counter(modstatus.STATE_OF_GLYPH[g] for g in st.scoreboard if g != ".")


@pytest.mark.slow
def test_apache_event_states_are_mod_status_own_per_thread_and_per_process(
    real_server,  # noqa: F811
) -> None:
    """Event (2 children x 4 threads): with mod_status answering, every worker thread
    has Apache's state for its slot (its glyphs, our own request left out) and each
    child reads as its busiest thread; before, every state read unknown."""
    srv = real_server("apache", mpm="event", max_workers=8, threads_per_child=4)
    clients = [_client(srv.port) for _ in range(4)]  # keep-alive: parked, threads idle
    half = _silent(srv.port)
    half.sendall(b"GET / HTTP/1.1\r\n")  # one thread reads it (R) until the timeout
    clients.append(half)
    url = f"http://127.0.0.1:{srv.port}/server-status"
    # every thread past its start ('S'): a child still starting under load was seen read
    # as 4 starting by the truth and as 4 waiting by the sample taken after it
    wait_until(
        lambda: (b := modstatus.fetch(url).scoreboard).count("R") == 1 and "S" not in b,
        10,
        "one R and no thread starting in the scoreboard",
    )
    truth = _glyph_states(modstatus.fetch(url))
    truth[WorkerState.WRITING] -= 1  # the test's own request ...
    truth[WorkerState.WAITING] += 1  # ... was served by an idle thread
    w = Watching(Sampler.attach(port=srv.port, status_url="auto"))
    try:
        snap = w.until(
            lambda s: s.model is not None and (s.model.status or "").startswith("mod_status"),
            10,
            "mod_status read",
        )
        assert snap.model is not None and "(event: 1 busy, 7 idle" in (snap.model.status or "")
        threads = [x for x in snap.workers if x.folded and x.state != "unknown"]
        assert +Counter(x.state for x in threads) == +truth  # 7 waiting, 1 reading
        procs = {x.pid: x.state for x in snap.live_workers if x.kind == Kind.PROCESS}
        assert sorted(procs.values()) == [WorkerState.READING, WorkerState.WAITING]
        assert sum(1 for x in threads if x.pid == next(iter(procs))) == 4
    finally:
        w.close()
        for c in clients:
            c.close()


@needs_ss
def test_half_open_connections_are_counted_per_listener_as_ss_counts_them(
    real_server,  # noqa: F811
) -> None:
    """Apache defers accept until data comes: silent clients stay half-open (SYN-RECV on
    the server's side), which attach read as '-' (unknown) though sock_diag has them."""
    srv = real_server("apache", mpm="prefork", max_workers=4, start=2)
    clients = [_silent(srv.port) for _ in range(3)]
    sampler = Sampler.attach(port=srv.port)
    try:
        syn = ["state", "syn-recv", f"( sport = :{srv.port} )"]
        wait_until(lambda: _ss_count("-tn", *syn) == 3, 5, "3 half-open in ss")
        snap = sampler.sample()
        assert [x.syn_recv for x in snap.listeners] == [_ss_count("-tn", *syn)] == [3]
    finally:
        sampler.close()
        for c in clients:
            c.close()


def _nobody_can_run_serverscope() -> str | None:
    """Why attach cannot be run as `nobody` here (None: it can)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return "needs root and setpriv (Debian package util-linux) to run as nobody"
    r = subprocess.run(
        [*NOBODY, sys.executable, "-c", "import telemetry"], capture_output=True, timeout=30
    )
    return None if r.returncode == 0 else "the checkout is not readable by nobody"


@needs_ss
@pytest.mark.slow
def test_a_user_who_may_not_read_the_servers_sockets_sees_unknown_and_why(
    real_server,  # noqa: F811
) -> None:
    """Root's nginx (workers as www-data), 10 keep-alive clients, watched as nobody: the
    connections and states are unknown, not '0 connections / waiting', and one line says
    why; with --port the listener is still read (sock_diag asks no rights)."""
    why = _nobody_can_run_serverscope()
    if why:
        pytest.skip(why)
    srv = real_server("nginx", workers=2, user="www-data")
    clients = [_client(srv.port) for _ in range(10)]
    try:
        root = Sampler.attach(pid=srv.root)
        try:  # root sees them all, as ss -tnp does
            mine = {x.pid: x.connections for x in root.sample().workers if x.connections}
            assert mine == _ss_per_pid(srv.port) and sum(mine.values()) == 10
        finally:
            root.close()
        snap = _once("--pid", str(srv.root), user=NOBODY)
        procs = [x for x in snap.workers if x.kind == Kind.PROCESS]
        assert len(procs) == 3 and all(x.connections is None for x in procs)
        assert all(x.state == WorkerState.UNKNOWN for x in procs), procs
        note = snap.model.access_note if snap.model else None
        assert note is not None and "run as root or as the server's user" in note
        assert snap.model is not None and snap.model.server == "nginx"  # its comm says
        snap = _once("--pid", str(srv.root), "--port", str(srv.port), user=NOBODY)
        assert [(x.port, x.queue, x.syn_recv) for x in snap.listeners] == [(srv.port, 0, 0)]
    finally:
        for c in clients:
            c.close()


def test_nginx_started_with_its_site_dir_is_named_nginx_from_its_executable(
    real_server,  # noqa: F811
) -> None:
    """`nginx -e LOG -c DIR/nginx.conf -p DIR`: its rewritten argv ends in /site, which
    named it "site" (no kind, no nginx advice); /proc/PID/exe says nginx."""
    srv = real_server("nginx", workers=2, site=True)
    with open(f"/proc/{srv.root}/cmdline", "rb") as f:
        assert f.read().rstrip(b"\0").endswith(b"/site")  # the case itself
    sampler = Sampler.attach(port=srv.port)
    try:
        model = sampler.sample().model
        assert model is not None and (model.server, model.program) == ("nginx", "nginx")
    finally:
        sampler.close()


def test_a_window_too_short_for_a_rule_is_said_in_one_line() -> None:
    """`--window` shorter than starvation's 1 s of samples: it could never fire."""
    r = subprocess.run(
        [*CLI, "--port", "1", "--window", "0.5", "--once"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    first = r.stderr.splitlines()[0]
    assert (
        first == "serverscope attach: --window 0.5 s is too short to diagnose: starvation "
        "needs 1 s, accept_skew needs 3 s, cpu_throttled needs 2 s, cpu_oversubscribed "
        "needs 2 s of samples"
    ), r.stderr
