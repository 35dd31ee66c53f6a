"""The attach source's judgements, without a server: states from outside, server kinds
from command lines, and the fix a diagnosis names only for a known real server."""

from __future__ import annotations

import dataclasses

import pytest

from telemetry import diagnosis, realkind
from telemetry.attach_source import _state
from telemetry.snapshot import (
    HostSample,
    Kind,
    ListenerSample,
    ModelInfo,
    Role,
    Snapshot,
    WorkerSample,
    WorkerState,
)


@pytest.mark.parametrize(
    ("letter", "conns", "threads", "state"),
    [
        ("T", 1, 1, WorkerState.STOPPED),  # SIGSTOPped: stands out whatever it holds
        ("t", 0, 4, WorkerState.STOPPED),
        ("Z", 0, 1, WorkerState.DEAD),
        ("S", 1, 1, WorkerState.READING),  # blocked on the one connection it holds
        ("R", 1, 1, WorkerState.WORKING),
        ("S", 0, 1, WorkerState.WAITING),
        ("S", 3, 8, WorkerState.UNKNOWN),  # threads: which one holds what is not shown
        ("S", 0, 8, WorkerState.WAITING),
    ],
)
def test_a_process_state_is_judged_from_proc_and_its_connections(
    letter: str, conns: int, threads: int, state: WorkerState
) -> None:
    assert _state(letter, conns, threads) == state


@pytest.mark.parametrize(
    ("cmd", "kw", "kind"),
    [
        (["/usr/sbin/apache2", "-f", "x.conf"], {}, "apache-prefork"),
        (["/usr/sbin/apache2"], {"threaded_children": True}, "apache-threaded"),
        (["nginx: master process nginx", "-c", "c"], {"listeners_per_port": 2}, "nginx-reuseport"),
        (["node", "cluster.js"], {"children": 2}, "node-cluster-rr"),
        (["node", "c.js"], {"children": 2, "workers_hold_listener": True}, "node-cluster-none"),
        (["python", "-m", "gunicorn", "-w", "2", "app:app"], {}, "gunicorn-sync"),
        (["python", "-m", "gunicorn", "-k", "gthread", "app:app"], {}, "gunicorn-gthread"),
        (["python", "-m", "gunicorn", "--threads", "4", "app:app"], {}, "gunicorn-gthread"),
        (["python", "-m", "uvicorn", "--workers", "2", "a:app"], {}, "uvicorn"),
        (["/usr/bin/redis-server"], {}, None),
    ],
)
def test_the_server_kind_is_read_from_its_command_line_and_shape(
    cmd: list[str], kw: dict, kind: str | None
) -> None:
    shape = {
        "children": 2,
        "threaded_children": False,
        "workers_hold_listener": False,
        "listeners_per_port": 1,
        **kw,
    }
    assert realkind.detect(cmd, **shape) == kind


def _starving(server: str | None, t: float) -> Snapshot:
    workers = tuple(
        WorkerSample(
            slot=None,
            pid=100 + i,
            tid=100 + i,
            generation=1,
            kind=Kind.PROCESS,
            state=WorkerState.READING,
            cpu_percent=0.0,
            connections=1,
        )
        for i in range(4)
    )
    thread = dataclasses.replace(
        workers[0], kind=Kind.THREAD, tid=999, role=Role.THREAD, cpu_percent=50.0, accepts=3
    )
    return Snapshot(
        seq=int(t * 4),
        time=t,
        wall_time=t,
        interval_s=0.25,
        source="attach",
        model=ModelInfo(name="attached", root_pid=1, server=server),
        workers=(*workers, thread),
        listeners=(ListenerSample(index=0, port=80, address="127.0.0.1", queue=3, limit=8),),
        host=HostSample(cpu_count=2, cpu_percent=1.0),
    )


@pytest.mark.parametrize(
    ("server", "fix"),
    [
        ("apache-prefork", "KeepAliveTimeout"),
        ("gunicorn-sync", "gthread"),
        (None, "shorten the keep-alive timeout"),  # the lab's own models: general words
    ],
)
def test_starvation_words_its_fix_in_a_known_servers_knobs(server: str | None, fix: str) -> None:
    win = [_starving(server, 1 + i * 0.25) for i in range(8)]
    d = diagnosis.starvation(win)
    assert d is not None and d.message.startswith("starvation: 4/4 workers busy")
    assert "each worker serves one connection to its end" in d.message
    assert fix in d.message


def test_thread_rows_are_left_out_of_totals_and_of_the_workers() -> None:
    snap = _starving(None, 1.0)
    assert len(snap.live_workers) == 4  # the thread row is not a worker
    totals = snap.totals()
    assert totals["accepts"] == 0 and totals["cpu_percent"] == 0.0  # not the thread's 3, 50
