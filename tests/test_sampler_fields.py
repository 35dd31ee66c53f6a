"""The supervisor source's hot loop builds WorkerSamples positionally from raw scoreboard
tuples (for speed, bench/bench_sampler.py): every field must still land where its name says."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from types import SimpleNamespace

from readers import procfs
from servers.config import ServerConfig
from servers.inflight import Client
from servers.scoreboard import Scoreboard
from servers.slots import Kind, Role, State
from sources.sampler import Sampler
from sources.supervisor_source import SupervisorSource
from values.current import Via
from values.snapshot import Kind as SKind
from values.snapshot import Role as SRole
from values.snapshot import WorkerSample, WorkerState


def test_every_worker_field_is_the_scoreboards_own() -> None:
    board = Scoreboard.create(nslots=8)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    fake = SimpleNamespace(
        scoreboard=board,
        child=SimpleNamespace(pid=os.getpid()),
        root_pid=os.getpid(),
        listeners=[lsock],
        config=ServerConfig(model="proc_spawn"),
    )
    sampler = Sampler(SupervisorSource(fake))  # type: ignore[arg-type]
    try:
        # slot 0: this process as a process worker with distinct figures in every field
        w = board.claim(0, listener=0, role=Role.WORKER)
        w.state(State.READING)
        for _ in range(7):
            w.accepted()
        for _ in range(3):
            w.served(100)
        board.slot(0).group = -1
        board.slot(0).deaths = 2
        w.req.connected(Client("127.0.0.1", 4321, 5.0))
        w.req.begin(b"GET /f HTTP/1.1", 6.0)
        # slot 1: this thread as a thread worker of group 5, a listener
        board.claim(1, kind=Kind.THREAD, group=5, listener=-1, role=Role.LISTENER)
        board.slot(1).state = State.KEEPALIVE
        # slot 2: dead
        board.claim(2)
        board.mark_dead(2, 9)
        first = sampler.sample()
        time.sleep(0.05)
        snap = sampler.sample()
        slots = {s.index: s for s in board.read().slots}
        now = snap.time
        tid = threading.get_native_id()
        st = procfs.proc_stat(os.getpid())
        assert st is not None
        w0, w1, w2 = snap.workers
        s0 = slots[0]
        assert dataclasses.asdict(w0) | {"state_age_s": 0, "age_s": 0, "cpu_percent": 0} == {
            "slot": 0,
            "pid": os.getpid(),
            "tid": tid,
            "generation": s0.generation,
            "kind": SKind.PROCESS,
            "state": WorkerState.READING,
            "group": -1,
            "listener": 0,
            "state_age_s": 0,
            "age_s": 0,
            "cpu_percent": 0,
            "cpu_seconds": w0.cpu_seconds,
            "rss_bytes": w0.rss_bytes,
            "connections": s0.open,
            "accepts": 0,
            "accepts_total": 7,
            "requests": 0,
            "requests_total": 3,
            "bytes_sent_total": 300,
            "deaths": 2,
            "name": "",
            "role": SRole.WORKER,
            "proc_state": None,
            "phases": None,
            "window_phases": None,
            "hold": None,  # attach's (read from the socket); the scoreboard says K or R
            "current": {
                "via": Via.SCOREBOARD,
                "requests": 1,
                "request": "GET /f HTTP/1.1",
                "client": "127.0.0.1:4321",
                "began": 6.0,
                "connected": 5.0,
            },
            "peers": None,  # attach's (read from the sockets)
            "blocked": None,  # attach's (/proc/PID/syscall)
        }
        assert w0.state_age_s is not None and abs(w0.state_age_s - (now - s0.last_change)) < 1e-6
        assert w0.age_s is not None and abs(w0.age_s - (now - s0.started)) < 1e-6
        assert w0.cpu_percent is not None and w0.cpu_percent >= 0
        # a process's CPU: its stat (all threads, the exited ones included) when it has
        # several threads, else its main thread's schedstat (finer; see the source)
        if st.num_threads > 1:
            truth = st.cpu_seconds
        else:
            with open(f"/proc/{os.getpid()}/schedstat") as f:
                truth = int(f.read().split()[0]) / 1e9
        assert w0.cpu_seconds is not None and abs(w0.cpu_seconds - truth) < 0.5
        assert w0.rss_bytes is not None and abs(w0.rss_bytes - st.rss_bytes) < 64 << 20
        assert first.workers[0].accepts is None  # no interval on the first sample
        assert (w1.kind, w1.state, w1.group, w1.role, w1.tid) == (
            SKind.THREAD,
            WorkerState.KEEPALIVE,
            5,
            SRole.LISTENER,
            tid,
        )
        assert w1.cpu_seconds is not None and w1.cpu_seconds > 0  # its own schedstat
        assert (w2.state, w2.alive, w2.cpu_seconds, w2.rss_bytes, w2.connections) == (
            WorkerState.DEAD,
            False,
            None,
            None,
            0,
        )
        assert all(isinstance(x, WorkerSample) for x in snap.workers)
    finally:
        sampler.close()
        lsock.close()
        board.close()


def test_positional_new_builds_what_the_dataclass_builds_and_refuses_post_init() -> None:
    import pytest

    from values.positional import positional_new

    values = [f"v{i}" for i in range(len(dataclasses.fields(WorkerSample)))]
    made = positional_new(WorkerSample)(*values)
    assert made == WorkerSample(*values) and hash(made) == hash(WorkerSample(*values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.pid = 3  # type: ignore[misc]

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="__post_init__"):
        positional_new(Checked)


def test_a_process_workers_rss_follows_it_at_the_next_refresh() -> None:
    """RSS is read with the full stat at a refresh (every FULL_STAT_EVERY-th sample), and
    only for processes that ran since their last one: this one allocates, so it ran."""
    board = Scoreboard.create(nslots=2)
    fake = SimpleNamespace(
        scoreboard=board,
        child=SimpleNamespace(pid=os.getpid()),
        root_pid=os.getpid(),
        listeners=[],
        config=ServerConfig(model="proc_spawn"),
    )
    src = SupervisorSource(fake)  # type: ignore[arg-type]
    sampler = Sampler(src)
    try:
        board.claim(0).state(State.WAITING)
        before = sampler.sample().workers[0].rss_bytes  # a refresh: stat read
        assert before is not None
        ballast = bytearray(96 << 20)  # touched: resident
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        seen = [sampler.sample().workers[0].rss_bytes for _ in range(src.FULL_STAT_EVERY)]
        assert seen[-1] is not None and seen[-1] >= before + (64 << 20), (before, seen)
        del ballast
    finally:
        sampler.close()
        board.close()
