"""Attach from the host to real servers in network and pid namespaces of their own (as a
container runs them), against `ss` and /proc/net run inside the namespace.

Each server listens on a port that a socket of the test also listens on in the host's
namespace: attach must read the server's, not ours.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

import synthetic
from commands import attach as attach_cmd
from conftest import read_response, wait_until
from export import prometheus as prom
from nsservers import NsServer, ns_server, why_not  # noqa: F401 - the fixture
from readers import accepts_bpf, placement
from readers.netns import NetNsError
from readers.netns import at as netns_at
from sources.reading import Reading, WorkerDeltas
from sources.sampler import Sampler
from text import attach as attach_text
from tui.screens.attach import AttachScreen
from values.placement import Placement
from values.snapshot import ModelInfo, Snapshot

BPF = accepts_bpf.unavailable()
QBPF = accepts_bpf.queue_unavailable() if BPF is None else BPF
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
NS_OURS = "/proc/self/ns/net"
SLEEP_S = 2  # how long the gunicorn test's two requests hold both workers


@pytest.fixture
def host_port() -> Iterator[int]:
    """A port listened on in the host's namespace (by the test), free in a new one."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


def _connected_by_pid(srv: NsServer) -> Counter[int]:
    """Connections on the server's port per holding pid, as `ss -tnp` shows them inside."""
    out: Counter[int] = Counter()
    for line in srv.ss("-tnp", "state", "connected", f"( sport = :{srv.port} )"):
        for pid in set(re.findall(r"pid=(\d+)", line)):
            out[int(pid)] += 1
    return out


def _listen_queues(srv: NsServer) -> list[tuple[str, int, int]]:
    """(local address, Recv-Q: the accept queue, Send-Q: its limit) per listener inside."""
    out = []
    for line in srv.ss("-ltn", f"( sport = :{srv.port} )"):
        f = line.split()
        out.append((f[3], int(f[1]), int(f[2])))
    return out


def _overflows(srv: NsServer) -> int:
    """TcpExt ListenOverflows as a process inside the namespace reads /proc/net/netstat."""
    lines = srv.proc_net("netstat").splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=False))["ListenOverflows"])
    raise AssertionError("no TcpExt in /proc/net/netstat")


def _gate_key_inside(srv: NsServer) -> tuple:
    """The dump gate's key (readers.sockowners.TcpChangeGate) from the files as a process
    inside the namespace reads them."""
    snmp = [ln.split() for ln in srv.proc_net("snmp").splitlines() if ln.startswith("Tcp:")]
    tcp = next(ln.split() for ln in srv.proc_net("sockstat").splitlines() if ln.startswith("TCP:"))
    return tuple(x.encode() for x in (*snmp[1][5:10], *tcp[2:5:2]))


def _exported(snap: Snapshot) -> dict[str, float]:
    """The exporter's series for `snap`, by name{labels} text."""
    registry = CollectorRegistry()
    collector = prom.SnapshotCollector()
    collector.update(snap)
    registry.register(collector)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for x in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(x.labels.items()))
            out[f"{x.name}{{{labels}}}"] = x.value
    return out


def _sample_until(
    sampler: Sampler, cond: Callable[[Snapshot], object], what: str, timeout: float = 15.0
) -> Snapshot:
    box: list[Snapshot] = []

    def ok() -> bool:
        box[:] = [sampler.sample()]
        return bool(cond(box[0]))

    wait_until(ok, timeout, what)
    return box[0]


def _conns(snap: Snapshot) -> Counter[int]:
    return Counter({w.pid: w.connections for w in snap.workers if w.connections})


@pytest.mark.slow
def test_nginx_in_its_own_namespaces_from_the_host_equals_ss_inside(
    ns_server: Callable[..., NsServer],  # noqa: F811
    host_port: int,
) -> None:
    srv = ns_server("nginx", workers=2, port=host_port)
    sampler = Sampler.attach(pid=srv.root, exact_accepts=False)  # eBPF: the gunicorn test
    held: list[socket.socket] = []
    try:
        for _ in range(5):  # keep-alive connections, each held by the worker that took it
            s = srv.connect()
            s.sendall(GET)
            assert read_response(s).status == 200
            held.append(s)
        truth = _connected_by_pid(srv)
        assert sum(truth.values()) == 5
        snap = _sample_until(sampler, lambda x: _conns(x) == truth, f"connections {truth}")
        # listeners: the namespace's one, queue and limit as ss shows them there
        assert [(f"{ln.address}:{ln.port}", ln.queue, ln.limit) for ln in snap.listeners] == [
            (addr, q, limit) for addr, q, limit in _listen_queues(srv)
        ]
        assert snap.kernel is not None and snap.kernel.listen_overflows == _overflows(srv)
        # the connection dump is skipped only when the namespace's own TCP counters stand
        gate = sampler.source.reader.gate  # type: ignore[attr-defined]
        # (but orphan, index 6: the kernel counts orphans host-wide)
        ours, inside = gate.counters(), _gate_key_inside(srv)
        assert ours[:6] == inside[:6]
        # where it runs: its network namespace, and pid 1 inside is the master
        where = snap.model.placement if snap.model else None
        assert where is not None and not where.netns_own and not where.pidns_own
        assert where.netns == os.stat(srv.netns).st_ino
        assert where.ns_pids[srv.root] == 1
        assert {w.pid for w in snap.workers} == set(srv.pids())
        assert all(where.ns_pids[p] == placement.ns_pid(p) for p in srv.pids())
    finally:
        for s in held:
            s.close()
        sampler.close()
    # by port in its namespace: the namespace's listener, not the host's on the same port
    by_port = Sampler.attach(port=srv.port, netns=srv.netns, exact_accepts=False)
    try:
        assert by_port.source.root == srv.root  # type: ignore[attr-defined]
    finally:
        by_port.close()


@pytest.mark.slow
def test_gunicorn_queue_overflows_and_queue_wait_inside_a_namespace(
    ns_server: Callable[..., NsServer],  # noqa: F811
    host_port: int,
) -> None:
    """Both sync workers held by a 2 s request, three more connections wait in the accept
    queue (backlog 2: it holds 3), two more overflow it; attach's queue, overflows and
    connections equal what ss and /proc/net/netstat show inside; with eBPF the accepts
    of all five and their queue wait are counted."""
    srv = ns_server("gunicorn", workers=2, port=host_port, backlog=2)
    sampler = Sampler.attach(pid=srv.root, exact_accepts=BPF is None)
    conns: list[socket.socket] = []
    try:
        slept = time.monotonic()  # the sleeps end after this + SLEEP_S
        for _ in range(2):
            s = srv.connect()
            s.sendall(f"GET /sleep?{SLEEP_S} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            conns.append(s)
        snap = _sample_until(sampler, lambda x: sum(_conns(x).values()) == 2, "2 busy workers")
        sent = []
        for _ in range(3):
            s = srv.connect()
            sent.append(time.monotonic())
            s.sendall(GET)
            conns.append(s)
        before = _overflows(srv)
        ns = netns_at(srv.netns)
        late = []
        for _ in range(2):  # no room in the queue: their SYNs are dropped and counted
            s = ns.run(socket.socket)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", srv.port))
            late.append(s)
        wait_until(lambda: _overflows(srv) >= before + 2, 5, "ListenOverflows +2")
        for s in late:
            s.close()
        snap = _sample_until(
            sampler,
            lambda x: x.listeners and x.listeners[0].queue == 3,
            "3 connections in the accept queue",
        )
        [(_, queue, limit)] = _listen_queues(srv)
        assert (queue, limit) == (snap.listeners[0].queue, snap.listeners[0].limit) == (3, 2)
        assert _conns(snap) == _connected_by_pid(srv)
        truth = _overflows(srv)
        snap = sampler.sample()
        assert snap.kernel is not None and snap.kernel.listen_overflows == truth
        series = _exported(snap)  # the exporter shows the namespace's figures too
        listener = f"address=127.0.0.1,listener=0,port={srv.port}"
        assert series[f"serverscope_listener_queue_length{{{listener}}}"] == 3
        assert series["serverscope_kernel_listen_overflows_total{}"] == truth
        answered = []
        for s in conns:  # all five answered once the sleeps end
            assert read_response(s).status == 200
            answered.append(time.monotonic())
        # a queued connection waited from its send until a sleep ended, at least, and
        # no longer than until its answer came
        least_ms = (slept + SLEEP_S - sent[0]) * 1000
        most_ms = max(a - t for a, t in zip(answered[2:], sent, strict=True)) * 1000
        if BPF is None:
            snap = _sample_until(
                sampler, lambda x: sum(w.accepts_total or 0 for w in x.workers) >= 5, "5 accepts"
            )
            assert sum(w.accepts_total or 0 for w in snap.workers) == 5
        if QBPF is None:
            snap = _sample_until(
                sampler,
                lambda x: x.phases is not None and x.phases.queue.count >= 5,
                "5 queue waits",
            )
            assert snap.phases is not None and snap.phases.queue.count == 5
            assert least_ms - 1 <= snap.phases.queue.max_ms <= most_ms + 1
    finally:
        for s in conns:
            s.close()
        sampler.close()


@pytest.mark.slow
def test_apache_s_mod_status_is_read_inside_its_namespace_and_its_pids_mapped(
    ns_server: Callable[..., NsServer],  # noqa: F811
    host_port: int,
) -> None:
    """mod_status is asked at the server's own 127.0.0.1 (from inside its namespace) and
    names its workers by the pids of its pid namespace: the request a worker served is
    shown on that worker's row, the host pid that holds the connection (ss inside)."""
    srv = ns_server("apache", workers=3, port=host_port)
    sampler = Sampler.attach(pid=srv.root, status_url="auto", exact_accepts=False)
    s = srv.connect()
    try:
        s.sendall(b"GET /index.html?inside-a-namespace HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(s).status == 200  # kept alive: its worker holds it, K
        [holder] = _connected_by_pid(srv)

        def served(snap: Snapshot) -> list[int]:
            return [
                w.pid
                for w in snap.workers
                if w.current is not None and "inside-a-namespace" in (w.current.request or "")
            ]

        snap = _sample_until(sampler, served, "the request on its worker's row")
        assert served(snap) == [holder]
        assert snap.model is not None and "mod_status" in (snap.model.status or "")
    finally:
        s.close()
        sampler.close()


def _cli(*args: str) -> tuple[int, str]:
    p = argparse.ArgumentParser(prog="serverscope")
    attach_cmd.add_parser(p.add_subparsers())
    a = p.parse_args(["attach", *args])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = attach_cmd.run(a)
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/nonexistent/ns", "no such file"),
        ("/etc/hostname", "not a network namespace"),
        ("/proc/self/ns/pid", "not a network namespace"),
    ],
)
def test_a_bad_netns_path_gets_one_line(path: str, says: str) -> None:
    code, err = _cli("--port", "1", "--netns", path, "--once")
    assert code != 0
    assert err.count("\n") == 1 and says in err and path in err, err
    with pytest.raises(NetNsError):
        netns_at(path)


def test_our_own_namespace_is_not_entered() -> None:
    ns = netns_at("/proc/self/ns/net")
    assert ns.own and ns.inode == os.stat("/proc/self/ns/net").st_ino


@pytest.mark.parametrize(
    ("path", "container"),
    [
        ("/system.slice/docker-3f2a9c1b7d4e" + "a" * 52 + ".scope", "docker 3f2a9c1b7d4e"),
        ("/docker/0123456789ab" + "c" * 52, "docker 0123456789ab"),
        ("/machine.slice/libpod-" + "9" * 64 + ".scope/container", "podman 999999999999"),
        (
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5f2b1c3e_1234_"
            "4cde_9abc_0123456789ab.slice/cri-containerd-" + "b" * 64 + ".scope",
            "kubernetes pod 5f2b1c3e-1234-4cde-9abc-0123456789ab container bbbbbbbbbbbb",
        ),
        (
            "/kubepods/besteffort/pod5f2b1c3e-1234-4cde-9abc-0123456789ab/" + "d" * 64,
            "kubernetes pod 5f2b1c3e-1234-4cde-9abc-0123456789ab container dddddddddddd",
        ),
        ("/system.slice/crio-" + "e" * 64 + ".scope", "cri-o eeeeeeeeeeee"),
        ("/lxc.payload.web1", "lxc web1"),
        ("/lxc/db", "lxc db"),
        ("/machine.slice/machine-web\\x2d1.scope", "systemd-nspawn web-1"),
        ("/user.slice/user-1000.slice/session-2.scope", None),
        ("/", None),
    ],
)
def test_the_container_a_cgroup_path_names(path: str, container: str | None) -> None:
    assert placement.container_of(path) == container


def test_the_queue_wait_script_follows_the_namespace_s_sockets_only() -> None:
    """A port is a namespace's own: another namespace's sockets on it are not pending."""
    text = accepts_bpf.script(10, 250, (8000,), netns=4026532176)
    assert "skc_net.net->ns.inum == 4026532176" in text
    assert "ns.inum" not in accepts_bpf.script(10, 250, (8000,))


@pytest.mark.slow
def test_the_docs_namespace_example_runs_as_written(tmp_path: Path) -> None:
    """docs/attach.md's example: a server in namespaces of its own, attached by pid and
    by port in its namespace; every process it starts is gone afterwards."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    doc = (Path(__file__).parent.parent / "docs" / "attach.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", doc, re.S)
    block = next((b for b in blocks if "unshare" in b), None)
    assert block is not None, "docs/attach.md: no example with unshare"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = tmp_path / "out"
    with out.open("w") as f:
        proc = subprocess.Popen(
            ["bash", "-e", "-c", block],
            cwd=tmp_path,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(90)
        finally:  # whatever the block left in its session (it ends its server itself)
            for p in psutil.process_iter():
                with contextlib.suppress(psutil.Error, OSError):
                    if p.pid != proc.pid and os.getsid(p.pid) == proc.pid:
                        p.kill()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = out.read_text()
    assert code == 0, text
    assert "runs in: network namespace" in text and "(not ours)" in text, text
    assert re.search(r"127\.0\.0\.1 \S* *8000", text), text
    assert "'netns_own': False" in text and ": 1}" in text, text


def test_the_counters_of_a_namespace_gone_with_its_server_are_unknown() -> None:
    """/proc/PID/net of a server that exited between two reads: None, not a crash."""

    class Gone:
        kind = "attach"
        net_dir = "/proc/0/net"  # no process 0 in /proc

        def read(self, now: float, deltas: WorkerDeltas) -> Reading:
            return Reading(ModelInfo(name="attached", root_pid=1), None, [], [])

    assert Sampler(Gone()).sample().kernel is None


def test_a_server_in_the_monitor_s_own_namespaces_is_not_said_to_run_elsewhere() -> None:
    """Run inside the same container as the monitor (CI's, say), its cgroup names that
    container: it is not elsewhere, and the head and subtitle say nothing of it."""
    here = Placement(netns=1, netns_own=True, pidns_own=True, container="docker 3f2a9c1b7d4e")
    assert not here.elsewhere
    there = Placement(netns=2, netns_own=False, pidns_own=False, ns_pids={4321: 1})
    assert there.elsewhere
    assert "(not ours)" in there.describe() and "1->4321" in there.describe()


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the server and attach as nobody: root")
def test_a_namespace_this_user_may_not_enter_gets_one_line(tmp_path: Path) -> None:
    """nobody's own process in a user and network namespace of its own (as in a rootless
    container): nobody may inspect it but not enter its network namespace."""
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (Debian package util-linux)")
    server = subprocess.Popen(
        [*nobody, "unshare", "--user", "--map-root-user", "--net", "--", "sleep", "60"],
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: os.stat(f"/proc/{server.pid}/ns/net").st_ino != os.stat(NS_OURS).st_ino,
            10,
            "the namespace",
        )
        attach = ["attach", "--pid", str(server.pid), "--once", "--estimate-accepts"]
        r = subprocess.run(
            [*nobody, sys.executable, "-m", "serverscope", *attach],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        if "unshare failed" in r.stderr or server.poll() is not None:
            pytest.skip("unprivileged user namespaces are not allowed here")
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
        assert f"not allowed to enter the network namespace /proc/{server.pid}/ns/net" in r.stderr
    finally:
        server.kill()
        server.wait()


def test_the_placement_survives_a_recording() -> None:
    """JSON (--json, --record) and back: the pid map's int keys too."""
    where = Placement(
        netns=4026532176,
        netns_own=False,
        pidns_own=False,
        cgroup="/system.slice/docker-" + "a" * 64 + ".scope",
        container="docker aaaaaaaaaaaa",
        ns_pids={15735: 1, 15737: 3},
    )
    snap = synthetic.snapshot()
    assert snap.model is not None
    snap = dataclasses.replace(snap, model=dataclasses.replace(snap.model, placement=where))
    back = Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert back.model is not None and back.model.placement == where


def test_the_head_and_the_monitor_s_subtitle_say_where_it_runs() -> None:
    where = Placement(
        netns=4026532176,
        netns_own=False,
        pidns_own=False,
        container="docker aaaaaaaaaaaa",
        ns_pids={15735: 1},
    )
    base = synthetic.snapshot()
    assert base.model is not None
    snap = dataclasses.replace(base, model=dataclasses.replace(base.model, placement=where))
    out = io.StringIO()
    Console(file=out, width=200).print(attach_text.render(snap))
    assert "runs in: network namespace 4026532176 (not ours) · container docker aaaaaaaaaaaa" in (
        out.getvalue()
    )
    monitor = SimpleNamespace(last=snap, source=SimpleNamespace(ended=None), frozen=False)
    monitor.threads = False
    monitor.sampling_cost = lambda: None
    assert "docker aaaaaaaaaaaa" in AttachScreen.subtitle(monitor)  # type: ignore[arg-type]
    out = io.StringIO()
    Console(file=out, width=200).print(attach_text.render(base))  # the lab's: no placement
    assert "runs in" not in out.getvalue()
