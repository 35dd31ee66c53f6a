"""reuseport --migrate: a stalled worker's queue handed to the others when it is restarted,
in a network namespace of the test's own (where net.ipv4.tcp_migrate_req may be set),
against `ss -ltne` run there; and the one line where the sysctl is not set.

The scenario itself is tests/migrate_run.py, run as a script inside the namespace: the
worker in slot 0 is stopped, 40 clients send GET /, the ones hashed to its socket queue
there, then it is killed (its master starts another in its slot).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import netns
import synthetic
from judging import stalled
from plumbing.tcpinfo import accept_queue
from servers import migrate, models
from servers.config import ConfigError, ServerConfig
from sources.owned_listeners import OwnedListeners
from values.snapshot import Snapshot, WorkerState

HERE = Path(__file__).parent
CLIENTS = 40


def _why_not() -> str | None:
    head, why = netns.prefix()
    if head is None:
        return why
    if not os.path.exists(migrate.SYSCTL):
        return f"this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+): {migrate.SYSCTL}"
    return None


def _in_netns(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        netns.argv(*argv), capture_output=True, text=True, timeout=timeout, env=os.environ
    )


def _scenario(*flags: str) -> dict:
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    host = os.stat("/proc/self/ns/net").st_ino
    script = str(HERE / "migrate_run.py")
    args = ("--host-netns", str(host), "--clients", str(CLIENTS), *flags)
    done = _in_netns(sys.executable, script, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    # every process the run started is gone with it (the namespace's and ours)
    assert out["pids"] and not [p for p in out["pids"] if os.path.exists(f"/proc/{p}")]
    return out


def _queues_as_ss_shows_them(out: dict) -> None:
    assert out["queued_stalled"] > 0  # the hash sent some of the 40 to the stopped worker
    assert out["answered_before"] + out["queued_stalled"] == CLIENTS
    # each socket's queue as the sampler read it, against `ss -ltne` (Recv-Q by inode)
    assert {int(k): v for k, v in out["ours_by_inode"].items()} == {
        int(k): v for k, v in out["ss_by_inode"].items()
    }


@pytest.mark.slow
def test_with_migrate_the_others_answer_the_stalled_workers_queue_when_it_is_restarted() -> None:
    out = _scenario("--migrate")
    _queues_as_ss_shows_them(out)
    assert out["source"] == ["sock_diag"]  # the supervisor holds no copy to ask TCP_INFO
    queued = out["queued_stalled"]
    assert out["outcomes"] == {"200": CLIENTS, "reset": 0, "other": 0}, out
    assert out["by_survivors"] == queued and out["by_new_worker"] == 0, out
    assert out["new_socket"] and not out["old_socket_listening"], out
    assert out["diagnosis"].endswith(
        f"; restart it: it alone holds its socket, so the kernel hands its {queued} "
        "connections to the other workers as it exits (--migrate, net.ipv4.tcp_migrate_req = 1)"
    ), out["diagnosis"]


@pytest.mark.slow
def test_without_migrate_the_queue_waits_in_the_kept_socket_for_the_new_worker() -> None:
    out = _scenario()
    _queues_as_ss_shows_them(out)
    assert out["source"] == ["tcp_info"]
    queued = out["queued_stalled"]
    assert out["outcomes"] == {"200": CLIENTS, "reset": 0, "other": 0}, out
    assert out["by_survivors"] == 0 and out["by_new_worker"] == queued, out
    assert not out["new_socket"] and out["old_socket_listening"], out
    assert "restarting it does not move them: the master keeps its socket" in out["diagnosis"]


@pytest.mark.slow
def test_workers_owning_their_sockets_without_the_sysctl_reset_the_queue() -> None:
    """Why --migrate is refused rather than run without it: the same close resets them."""
    out = _scenario("--migrate", "--sysctl-off", "--young")
    queued = out["queued_stalled"]
    assert queued > 0
    assert out["outcomes"] == {"200": CLIENTS - queued, "reset": queued, "other": 0}, out
    assert out["by_survivors"] == 0, out


WATCHDOG_S = 2.0  # room for the 40 clients to queue before it fires


def _watchdog_fired(after_stop_s: float) -> bool:
    """Silent S s since its last beat (up to a beat, S/4, before the stop), seen on the
    master's tick (S/4), reaped and gone from /proc (a moment more)."""
    return WATCHDOG_S * 3 / 4 <= after_stop_s < WATCHDOG_S + 1.5


@pytest.mark.slow
def test_the_watchdog_kills_the_stopped_worker_and_with_migrate_the_others_answer() -> None:
    """fix's migrate+watchdog remedy: no one but the master's watchdog kills the worker."""
    out = _scenario("--migrate", "--watchdog", str(WATCHDOG_S))
    _queues_as_ss_shows_them(out)
    queued = out["queued_stalled"]
    assert _watchdog_fired(out["killed_after_s"]), out
    assert out["outcomes"] == {"200": CLIENTS, "reset": 0, "other": 0}, out
    assert out["by_survivors"] == queued and out["by_new_worker"] == 0, out


@pytest.mark.slow
def test_the_watchdog_alone_leaves_the_queue_to_the_new_worker() -> None:
    """fix's watchdog remedy: the master keeps the socket, its successor takes the queue."""
    out = _scenario("--watchdog", str(WATCHDOG_S))
    queued = out["queued_stalled"]
    assert _watchdog_fired(out["killed_after_s"]), out
    assert out["outcomes"] == {"200": CLIENTS, "reset": 0, "other": 0}, out
    assert out["by_survivors"] == 0 and out["by_new_worker"] == queued, out


def test_migrate_is_refused_in_one_line_where_the_sysctl_is_not_set() -> None:
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    exe = [sys.executable, "-m", "commands", "run", "--model", "reuseport", "--migrate"]
    done = _in_netns(*exe, "--duration", "1")  # a fresh namespace: the sysctl is 0 there
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "serverscope: --migrate needs net.ipv4.tcp_migrate_req = 1 in this network namespace "
        "(it is 0); serverscope does not change it for the whole machine: run it in a "
        f"namespace of its own: {migrate.IN_A_NAMESPACE}serverscope ..."
    ], done.stderr
    with pytest.raises(ConfigError, match=r"^--migrate needs --workers 2 or more: a queue"):
        models.spec("reuseport").resolve(ServerConfig(model="reuseport", workers=1, migrate=True))


def test_the_hint_runs_the_users_own_command_in_a_namespace_with_the_sysctl_set() -> None:
    why = _why_not() or (None if os.geteuid() == 0 else "the hint is for root")
    if why is not None:
        pytest.skip(why)
    argv = ["/usr/bin/serverscope", "serve", "reuseport", "--migrate", "--port", "0"]
    hint = migrate.IN_A_NAMESPACE + migrate.this_command(argv)
    assert hint.endswith("sh serverscope serve reuseport --migrate --port 0")
    assert migrate.this_command(["/usr/bin/serverscope"]) == "serverscope ..."  # the chooser's
    # as written, with `cat` for serverscope: the sysctl is 1 where the command runs
    probe = hint.removeprefix("(as root) ").replace(
        " sh serverscope serve reuseport --migrate --port 0", f" sh cat {migrate.SYSCTL}"
    )
    done = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr


def test_the_sysctl_is_read_never_written(tmp_path: Path) -> None:
    f = tmp_path / "tcp_migrate_req"
    f.write_text("1\n")
    assert migrate.unavailable(str(f)) is None
    f.write_text("0\n")
    assert "it is 0" in (migrate.unavailable(str(f)) or "")
    assert f.read_text() == "0\n"
    assert "Linux 5.14+" in (migrate.unavailable(str(tmp_path / "none")) or "")


def _stalled_reuseport(policy: str | None) -> list[Snapshot]:
    """Four reuseport workers, worker 1 stopped 3 s with 40 connections in its queue."""
    out = []
    for s in synthetic.series(4, model="reuseport", workers=4, listeners=4, queue=[0, 40, 0, 0]):
        ws = list(s.workers)
        ws[1] = dataclasses.replace(ws[1], state=WorkerState.STOPPED, proc_state="T")
        lns = list(s.listeners)
        lns[1] = dataclasses.replace(lns[1], stalled_s=3.0)
        model = dataclasses.replace(s.model, policy=policy) if s.model else None
        out.append(dataclasses.replace(s, workers=tuple(ws), listeners=tuple(lns), model=model))
    return out


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        (
            "steer hash + migrate",
            "; restart it: it alone holds its socket, so the kernel hands its 40 connections "
            "to the other workers as it exits (--migrate, net.ipv4.tcp_migrate_req = 1)",
        ),
        (
            "steer hash",
            "; restarting it does not move them: the master keeps its socket, so they wait "
            "for the new worker (with --migrate each worker alone holds its socket and the "
            "kernel hands its queue to the others as it exits)",
        ),
        (
            None,  # attached: whether a master holds the socket is not known here
            "; they move to the other sockets only if its socket closes with "
            "net.ipv4.tcp_migrate_req = 1 (Linux 5.14+), which needs no other process (a "
            "master) to hold it; else a restart leaves them to the next taker, or resets "
            "them with it",
        ),
    ],
)
def test_the_stalled_workers_remedy_says_what_a_restart_does_there(
    policy: str | None, says: str
) -> None:
    d = stalled.stalled_owner(_stalled_reuseport(policy))
    assert d is not None
    assert d.message == (
        "stalled worker: worker 1 is stopped (/proc state T) with 40 connections in its own "
        "reuseport queue on port 8080, the oldest waiting >= 3 s; the other 3 hold none" + says
    )


@pytest.mark.slow
def test_the_docs_command_runs_as_written_and_leaves_nothing() -> None:
    """docs/balancing.md's `unshare ...` line (not a `serverscope` line, so
    test_documented_commands leaves it to this test), with the serverscope under test."""
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    page = (HERE.parent / "docs" / "balancing.md").read_text(encoding="utf-8")
    (line,) = [x for x in page.splitlines() if x.startswith("unshare --net sh -c ")]
    assert "serverscope run --model reuseport --migrate" in line
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = psutil.Popen(
        ["sh", "-c", line], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    seen: set[int] = set()
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            seen |= {c.pid for c in proc.children(recursive=True)}
        time.sleep(0.1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "reuseport (workers=3, migrate)" in out, out[-2000:]
    assert "Errors: none" in out, out[-2000:]
    assert seen and not [p for p in seen if psutil.pid_exists(p)]


def test_owned_listeners_read_each_queue_as_tcp_info_does_and_place_unheld_ones_last() -> None:
    group = []
    port = 0
    for _ in range(2):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        port = s.getsockname()[1]
        s.listen(7)
        group.append(s)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    owned = OwnedListeners()
    try:
        # held by "worker" index 3 (this process holds both: the first inode found wins)
        truth = {os.fstat(s.fileno()).st_ino: accept_queue(s) for s in group}
        assert sum(q[0] for q in truth.values() if q) == 6
        rows = owned.read(port, [(os.getpid(), 3)])
        assert {r.sock.inode: (r.sock.rqueue, r.sock.wqueue) for r in rows} == truth
        assert [r.index for r in rows] == [3, 3]
        rows = owned.read(port, [])  # no worker holds them: indexes after every slot's
        assert [r.index for r in rows] == [0, 1]
    finally:
        owned.close()
        for c in [*clients, *group]:
            c.close()
