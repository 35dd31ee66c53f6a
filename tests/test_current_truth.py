"""Each worker's current request, client and connections against ground truth: the
client's own socket (getsockname), the clock, Apache's mod_status page, and `ss -tnpi`."""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import time
from collections.abc import Callable

import pytest

from conftest import wait_until
from readers import modstatus
from realservers import real_server  # noqa: F401 - the fixture
from servers.supervisor import Supervisor
from sources.sampler import Sampler
from test_attach_real import Watching
from test_realservers import SS, _client, needs_ss
from values.snapshot import Role, Snapshot, WorkerSample


def _me(c: socket.socket) -> str:
    return f"127.0.0.1:{c.getsockname()[1]}"


def _holding(snap: Snapshot, client: str) -> list[WorkerSample]:
    """The workers whose current request is this client's (in progress)."""
    return [
        w
        for w in snap.workers
        if w.current is not None and w.current.client == client and w.current.requests
    ]


def _sample_until(s: Sampler, cond: Callable[[Snapshot], bool], what: str) -> Snapshot:
    got: list[Snapshot] = []

    def ok() -> bool:
        got.append(s.sample())
        return cond(got[-1])

    wait_until(ok, 10, what)
    return got[-1]


@pytest.mark.parametrize(
    ("model", "knobs"),
    [
        ("prefork", {"start_servers": 2, "min_spare": 1, "max_spare": 2}),  # a blocking child
        ("event", {"workers": 1, "threads_per_child": 2}),  # a thread, handed by the listener
        ("cluster", {"workers": 1}),  # an event loop, its connections handed by the master
    ],
)
def test_a_half_sent_request_shows_its_line_its_client_and_a_growing_age(
    start_server: Callable[..., Supervisor], model: str, knobs: dict[str, object]
) -> None:
    """A client that sent a request line and a header and stopped: its worker's current
    request is that line, its client the client socket's own address:port, its age
    (snapshot time - began) grows from sample to sample with the same start. On an event
    loop holding two such requests the older one is shown, both counted."""
    sup = start_server(model, **knobs)
    sampler = Sampler.for_supervisor(sup)
    t0 = time.monotonic()
    first = socket.create_connection(("127.0.0.1", sup.port), timeout=5)
    clients = [first]
    try:
        first.sendall(b"GET /held?who=first HTTP/1.1\r\nHost: t\r\n")
        me = _me(first)
        snap = _sample_until(sampler, lambda s: bool(_holding(s, me)), f"a worker serving {me}")
        t1 = time.monotonic()  # the sample's time is when its read began: a record the
        # worker wrote during the read is later than it (by 0.3 ms seen), never past t1
        [w] = _holding(snap, me)
        cur = w.current
        assert cur is not None and cur.began is not None and cur.connected is not None
        assert cur.request == "GET /held?who=first HTTP/1.1"
        assert w.role == Role.WORKER and w.state in ("reading", "keepalive")
        # taken, and begun, since the client connected (the same clock): cluster's loop
        # takes it from the master after the master had its bytes (began < connected)
        assert t0 <= cur.connected <= t1 and t0 <= cur.began <= t1
        age = snap.time - cur.began
        later = _sample_until(sampler, lambda s: s.time - snap.time >= 0.3, "a sample 0.3 s later")
        [again] = [x for x in later.workers if x.key == w.key]
        assert again.current == cur  # the same request, the same start
        assert later.time - cur.began >= age + 0.3  # its age grew with the clock
        if model == "cluster":  # one loop: a second request, the older one stays shown
            second = socket.create_connection(("127.0.0.1", sup.port), timeout=5)
            clients.append(second)
            second.sendall(b"GET /held?who=second HTTP/1.1\r\n")
            snap = _sample_until(
                sampler,
                lambda s: any(x.current and x.current.requests == 2 for x in s.workers),
                "two requests in progress on the loop",
            )
            [w2] = _holding(snap, me)
            assert w2.current == dataclasses.replace(cur, requests=2)
    finally:
        for c in clients:
            c.close()
        sampler.close()


def _ss_peers(port: int) -> dict[int, dict[str, tuple[str, int, int, int]]]:
    """{pid: {peer: (state, Recv-Q, bytes_received, bytes_sent)}} as `ss -tnpi` shows the
    connections to `port` (a counter it leaves out is 0)."""
    out = subprocess.run(
        [SS or "ss", "-Htnpi", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    found: dict[int, dict[str, tuple[str, int, int, int]]] = {}
    for head, info in zip(out[::2], out[1::2], strict=True):
        f = head.split()
        pid = re.search(r"pid=(\d+)", head)
        if pid is None:
            continue

        def counter(name: str, text: str = info) -> int:
            m = re.search(rf"\b{name}:(\d+)", text)
            return int(m.group(1)) if m else 0

        found.setdefault(int(pid.group(1)), {})[f[4]] = (
            f[0],
            int(f[1]),
            counter("bytes_received"),
            counter("bytes_sent"),
        )
    return found


def _peers(snap: Snapshot) -> dict[int, dict[str, tuple[str, int, int, int]]]:
    out: dict[int, dict[str, tuple[str, int, int, int]]] = {}
    for w in snap.workers:
        if w.peers is not None and w.peers.total and w.slot is None and not w.is_thread:
            out[w.pid] = {
                p.client: (p.tcp_state, p.recv_q, p.bytes_received or 0, p.bytes_sent or 0)
                for p in w.peers.listed
            }
    return out


@needs_ss
@pytest.mark.slow
def test_nginx_workers_connections_are_what_ss_shows_for_the_worker_holding_them(
    real_server,  # noqa: F811
) -> None:
    """A keep-alive client after a response, one that stopped mid-request, a silent one:
    each listed under the nginx worker ss says holds it, with ss's state and bytes."""
    srv = real_server("nginx", workers=2)
    keep = _client(srv.port)
    part = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    part.sendall(b"GET /half HTTP/1.1\r\nHost: t\r\n")
    quiet = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sampler = Sampler.attach(port=srv.port)
    try:
        mine = {_me(c) for c in (keep, part, quiet)}
        wait_until(lambda: sum(len(x) for x in _ss_peers(srv.port).values()) == 3, 5, "3 in ss")
        snap = _sample_until(
            sampler, lambda s: {c for p in _peers(s).values() for c in p} == mine, "3 listed"
        )
        truth = _ss_peers(srv.port)
        assert _peers(snap) == truth
        rows = {c: (pid, st) for pid, p in truth.items() for c, st in p.items()}
        assert rows[_me(part)][1][2] == len(b"GET /half HTTP/1.1\r\nHost: t\r\n")
        assert rows[_me(quiet)][1][2:] == (0, 0)
        assert rows[_me(keep)][1][3] > 0
    finally:
        sampler.close()
        for c in (keep, part, quiet):
            c.close()


@needs_ss
@pytest.mark.slow
def test_apache_prefork_shows_mod_status_request_and_client_for_each_worker(
    real_server,  # noqa: F811
) -> None:
    """ExtendedStatus on: the child holding a keep-alive client shows the request it
    answered, the one holding a client stopped mid-request a request in progress (its
    line not read yet: Apache shows it once the head is in), each with mod_status's
    Client; as the status page itself says, and as ss says who holds which."""
    srv = real_server("apache", mpm="prefork", max_workers=4, start=4, keepalive_timeout=30)
    keep = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    keep.sendall(b"GET /index.html?who=keep HTTP/1.1\r\nHost: t\r\n\r\n")
    assert keep.recv(4096).startswith(b"HTTP/1.1 200")
    stuck = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    stuck.sendall(b"GET /slow?who=stuck HTTP/1.1\r\nHost: t\r\n")
    url = f"http://127.0.0.1:{srv.port}/server-status"
    w = Watching(Sampler.attach(port=srv.port, status_url=url))
    try:
        holder: dict[str, int] = {}

        def held() -> bool:
            for pid, peers in _ss_peers(srv.port).items():
                for peer in peers:
                    holder[peer] = pid
            return _me(keep) in holder and _me(stuck) in holder

        wait_until(held, 5, "both clients held by a child")
        kpid, spid = holder[_me(keep)], holder[_me(stuck)]

        def shown(s: Snapshot) -> bool:
            cur = {x.pid: x.current for x in s.workers if x.current is not None}
            return kpid in cur and spid in cur and bool(cur[spid].requests)

        snap = w.until(shown, 10, "both children's requests from mod_status")
        cur = {x.pid: x.current for x in snap.workers if x.current is not None}
        k, s = cur[kpid], cur[spid]
        assert k is not None and s is not None
        assert (k.via, k.requests, k.request, k.client) == (
            "mod_status",
            0,
            "GET /index.html?who=keep HTTP/1.1",
            "127.0.0.1",
        )
        assert (s.requests, s.request, s.client) == (1, None, "127.0.0.1")
        assert s.began is not None and 0 <= snap.time - s.began < 15
        # the page itself, read now: the same rows for those children
        page = modstatus._OPENER.open(url, timeout=5).read().decode("latin-1")
        rows = {r.pid: r for r in modstatus.parse_rows(page)}
        assert (rows[kpid].mode, rows[kpid].request, rows[kpid].client) == (
            "K",
            k.request,
            k.client,
        )
        assert (rows[spid].mode, rows[spid].request, rows[spid].client) == ("R", "", s.client)
        # and the sockets: each child's one connection is its client's
        [kp] = [
            x.peers for x in snap.workers if x.pid == kpid and x.slot is None and not x.is_thread
        ]
        assert kp is not None and [p.client for p in kp.listed] == [_me(keep)]
    finally:
        w.close()
        keep.close()
        stuck.close()
