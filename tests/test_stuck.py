"""Stuck workers, on synthetic snapshots: who is stuck (judging.stuck), each episode
captured once within the budget (lab.autocapture with a stand-in capturer), where the
stuck workers stand (the grouped diagnosis), and the captures carried by snapshots
through the codec, recordings, the event log and `run --json`."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

import synthetic
from judging.events import EventDeriver
from judging.stuck import Budget, StuckSettings, StuckWatch, event_line, grouped
from lab.autocapture import AutoCapture
from lab.summary import stuck_json
from values.blocked import Blocked
from values.current import Current, Peer, Peers, Via
from values.recording import RecordingWriter, read_recording
from values.snapshot import Snapshot, WorkerState
from values.stackvalues import Frame, StackCapture, ThreadStack
from values.stuck import Episode, StuckCapture

pytestmark = pytest.mark.timeout(30)

SLEEP = (Frame("app", "/srv/wsgiapp.py", 7, "wsgiapp"), Frame("handle", "/g/sync.py", 178))
OTHER = (Frame("read", "/srv/db.py", 12, "db"), Frame("handle", "/g/sync.py", 178))


def stack(pid: int, tid: int, frames: tuple[Frame, ...] = SLEEP) -> StackCapture:
    t = ThreadStack(tid, "MainThread", "idle", frames)
    return StackCapture(pid, None, "python", "libpython", "py-spy", (t,), 0.0, "", 0.04)


def snaps(n: int, *, workers: int = 4, period: float = 0.25, **kw: object) -> list[Snapshot]:
    """`n` snapshots `period` apart; `kw` as synthetic.snapshot takes it, `age0` the
    first snapshot's state_age_s (growing), `began` each worker's request start."""
    age0 = float(kw.pop("age0", 0.0))  # type: ignore[arg-type]
    out = []
    for i in range(n):
        t = 1000.0 + i * period
        s = synthetic.snapshot(seq=i, time=t, workers=workers, **kw)  # type: ignore[arg-type]
        ws = tuple(dataclasses.replace(w, state_age_s=age0 + i * period) for w in s.workers)
        out.append(dataclasses.replace(s, workers=ws))
    return out


def in_request(began: float, client: str = "127.0.0.1:51234") -> Current:
    return Current(Via.SCOREBOARD, 1, "GET /sleep?12 HTTP/1.1", client, began, began)


# -- who is stuck ---------------------------------------------------------------------------


def test_a_worker_in_one_request_is_stuck_once_per_episode_and_idle_ones_never() -> None:
    cur = [in_request(1000.0), None, None, None]
    states = ["working", "waiting", "waiting", "waiting"]
    watch = StuckWatch(stuck_after=2.0)
    new = [e for s in snaps(40, states=states, current=cur) for e in watch.step(s)]
    assert [(e.worker, e.what, e.since, e.exact) for e in new] == [
        ("worker 0", "request", 1000.0, True)
    ]
    assert new[0].request == "GET /sleep?12 HTTP/1.1" and new[0].client == "127.0.0.1:51234"
    # the next request on the same worker is another episode
    later = snaps(12, states=states, current=[in_request(1010.0), None, None, None])
    later = [dataclasses.replace(s, time=s.time + 10) for s in later]
    again = [e for s in later for e in watch.step(s)]
    assert [e.since for e in again] == [1010.0]


def test_a_state_without_an_age_counts_from_when_the_monitor_first_saw_it() -> None:
    """An attached worker's state has no age: stuck after stuck_after seconds of samples
    in the same state, said to be a lower bound (exact False)."""
    watch = StuckWatch(stuck_after=1.0)
    series = snaps(10, states=["reading", "waiting"], workers=2)
    series = [
        dataclasses.replace(
            s, workers=tuple(dataclasses.replace(w, state_age_s=None) for w in s.workers)
        )
        for s in series
    ]
    got = [(s.time, e) for s in series for e in watch.step(s)]
    assert [(t, e.worker, e.what, e.since, e.exact) for t, e in got] == [
        (1001.0, "worker 0", "reading", 1000.0, False)
    ]


def test_one_sample_read_otherwise_does_not_end_an_attached_workers_episode() -> None:
    """From outside a state is read from the socket every 0.5 s: one sample of another
    state in a long keep-alive wait is not a new episode (Apache under load showed it)."""
    watch = StuckWatch(stuck_after=1.0)
    states = (
        ["keepalive"] * 8 + ["waiting"] + ["keepalive"] * 8 + ["waiting"] * 5 + ["keepalive"] * 8
    )
    new = []
    for i, st in enumerate(states):
        s = snaps(1, workers=1, states=[st])[0]
        s = dataclasses.replace(
            s,
            time=1000.0 + i * 0.25,
            workers=tuple(dataclasses.replace(w, state_age_s=None) for w in s.workers),
        )
        new += [(s.time, e.since) for e in watch.step(s)]
    # the one-sample flicker is the same episode; 1.25 s of waiting ends it
    assert new == [(1001.0, 1000.0), (1006.5, 1005.5)]


def _attached(states: list[str], **per_sample: list[object]) -> list[Snapshot]:
    """One attached worker (no state age) 0.25 s apart from t=1000, its state and any
    other field (accepts, blocked, peers...) given per sample."""
    out = []
    for i, st in enumerate(states):
        s = snaps(1, workers=1, states=[st])[0]
        fields = {k: v[i] for k, v in per_sample.items()}
        w = dataclasses.replace(s.workers[0], state_age_s=None, **fields)  # type: ignore[arg-type]
        out.append(dataclasses.replace(s, time=1000.0 + i * 0.25, workers=(w,)))
    return out


def _stuck_in(series: list[Snapshot]) -> list[tuple[float, str]]:
    watch = StuckWatch(stuck_after=2.0)
    return [(s.time, e.what) for s in series for e in watch.step(s)]


def _peer(last_sent: float, *, sent: int = 1200, received: int = 800) -> Peers:
    p = Peer(
        "127.0.0.1:40000",
        "ESTAB",
        bytes_received=received,
        bytes_sent=sent,
        last_recv=last_sent - 0.001,
        last_sent=last_sent,
        opened=990.0,
    )
    return Peers((p,), 1)


def test_a_worker_that_accepts_between_samples_is_not_stuck_in_one_busy_state() -> None:
    """gunicorn sync under wrk (Connection: close, ~400 req/s a worker) read `working` in
    most samples, waiting in a few: it was reported stuck working after 2.1 s. It took new
    connections in every interval: it is not in one request."""
    states = (["working"] * 3 + ["waiting"]) * 6
    busy = _attached(states, accepts=[100] * len(states))
    assert _stuck_in(busy) == []
    # the same series with no accept is one long stay in `working` (a request that runs)
    assert _stuck_in(_attached(states, accepts=[0] * len(states))) == [(1002.0, "working")]


def test_an_event_loop_seen_in_its_wait_between_busy_samples_is_not_stuck() -> None:
    """nginx under a keep-alive load: `working` (on a CPU) and parked in epoll_wait with
    all its clients by turns; the one-sample grace kept the episode through the waits and
    it was reported stuck working, its stack in epoll_wait."""
    loop = Blocked("epoll_wait", fd=8)
    states = ["working", "keepalive"] * 12
    blocked = [Blocked("running") if st == "working" else loop for st in states]
    series = _attached(states, blocked=blocked, connections=[4] * len(states))
    assert _stuck_in(series) == []


def test_a_worker_that_answered_since_its_state_began_is_not_stuck_in_it() -> None:
    """Apache prefork serving one keep-alive client without a pause (wrk): mod_status,
    polled once a second, read its glyph K at most polls, its connection's last response
    milliseconds old; it was reported stuck in keep-alive. One whose last response is
    older than its wait is (the idle client)."""
    states = ["keepalive"] * 24
    times = [1000.0 + i * 0.25 for i in range(len(states))]
    one_fd = Blocked("poll", nfds=1)
    serving = _attached(
        states,
        peers=[_peer(t - 0.01) for t in times],
        blocked=[one_fd] * len(states),
        connections=[1] * len(states),
    )
    assert _stuck_in(serving) == []
    idle = _attached(
        ["keepalive"] * 12,
        peers=[_peer(995.0)] * 12,
        blocked=[one_fd] * 12,
        connections=[1] * 12,
    )
    assert _stuck_in(idle) == [(1002.0, "keepalive")]
    # a client that trickles its request (bytes in, none out) keeps its reader stuck
    trickle = _attached(
        ["reading"] * 12,
        peers=[
            Peers(
                (
                    Peer(
                        "127.0.0.1:40001",
                        "ESTAB",
                        bytes_received=10 + i,
                        bytes_sent=0,
                        last_recv=t,
                        last_sent=990.0,
                        opened=990.0,
                    ),
                ),
                1,
            )
            for i, t in enumerate(times[:12])
        ],
        connections=[1] * 12,
    )
    assert _stuck_in(trickle) == [(1002.0, "reading")]


def test_stopped_and_keepalive_workers_are_stuck_waiting_ones_are_not() -> None:
    watch = StuckWatch(stuck_after=2.0)
    states = ["stopped", "keepalive", "waiting", "empty"]
    new = [e for s in snaps(3, states=states, age0=3.0) for e in watch.step(s)]
    assert sorted((e.worker, e.what) for e in new) == [
        ("worker 0", "stopped"),
        ("worker 1", "keepalive"),
    ]


def test_a_state_that_began_again_between_samples_is_a_new_episode() -> None:
    """A sync worker serving back to back stays 'working' in every sample, but its
    state's age drops: each request is its own episode."""
    watch = StuckWatch(stuck_after=2.0)
    first = snaps(1, states=["working"], workers=1, age0=2.5)[0]
    assert len(watch.step(first)) == 1
    again = snaps(1, states=["working"], workers=1, age0=0.1)[0]
    again = dataclasses.replace(again, time=first.time + 0.25)
    assert watch.step(again) == []
    assert watch.open[again.workers[0].key].since == pytest.approx(again.time - 0.1)


# -- the budget -----------------------------------------------------------------------------


def test_the_budget_caps_captures_a_minute_and_each_worker_once_a_minute() -> None:
    b = Budget(per_minute=30)
    took = [b.take((i, 1000 + i, 1), 0.0) for i in range(250)]
    assert sum(took) == 30 and took[:30] == [True] * 30
    assert not b.take((0, 1000, 1), 59.0)  # worker 0 again within 60 s: no
    # refills at 30 a minute: 2 s gives one more, for another worker
    assert b.take((200, 1200, 1), 2.0)
    assert not b.take((201, 1201, 1), 2.1)
    assert b.take((0, 1000, 1), 61.0)


def test_a_starved_pool_of_250_is_captured_within_the_budget_once_each() -> None:
    """250 workers stuck in one request each over 20 s of samples: 30 at once, then one
    every 2 s; no worker twice; the diagnosis counts what was captured of how many."""
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def capturer(pid: int, tid: int) -> StackCapture:
        with lock:
            calls.append((pid, tid))
        return stack(pid, tid)

    auto = AutoCapture(StuckSettings(2.0, 30), capturer=capturer)
    cur = [in_request(999.0, f"127.0.0.1:{40000 + i}") for i in range(250)]
    came: list[StuckCapture] = []
    last = None
    try:
        for s in snaps(80, workers=250, states=["working"], current=cur):
            last = auto.step(s)
            came += last.stuck
        deadline = time.monotonic() + 10
        while len(came) < auto.taken and time.monotonic() < deadline:
            time.sleep(0.02)
            last = auto.step(dataclasses.replace(s, time=s.time + 0.01, seq=s.seq + 1))
            came += last.stuck
    finally:
        auto.close()
    assert auto.episodes == 250
    assert len(calls) == len(set(calls)) == auto.taken == len(came)
    assert 30 <= auto.taken <= 30 + 20 / 2 + 1  # the burst, then one per 2 s over ~20 s
    assert last is not None
    d = next(d for d in last.diagnoses if d.rule == "stuck")
    assert d.message.startswith(f"stuck: {len(came)} of {len(came)} stuck workers (in one")
    assert "`app` (wsgiapp.py:7) <- `handle` (sync.py:178)" in d.message
    assert f"(stacks of {len(came)} of 250 stuck: the others still being read or past" in d.message


def test_no_budget_no_capture() -> None:
    auto = AutoCapture(StuckSettings(2.0, 0), capturer=lambda p, t: pytest.fail("captured"))
    for s in snaps(20, states=["working"], current=[in_request(999.0)]):
        assert auto.step(s).stuck == ()
    auto.close()


# -- where they stand -------------------------------------------------------------------------


def _cap(i: int, frames: tuple[Frame, ...], what: str = "request") -> StuckCapture:
    e = Episode(f"worker {i}", 100 + i, 100 + i, 1, i, what, "working", 990.0, True)
    return StuckCapture(e, 1000.0, stack(100 + i, 100 + i, frames))


def test_identical_stacks_are_grouped_and_the_most_common_named() -> None:
    caps = [_cap(i, SLEEP) for i in range(7)] + [_cap(7, OTHER)]
    d = grouped(caps, stuck=8)
    assert d is not None and d.rule == "stuck"
    assert d.message == (
        "stuck: 7 of 8 stuck workers (in one request) are in `app` (wsgiapp.py:7) <- "
        "`handle` (sync.py:178); 1 other stack"
    )
    keep = grouped([_cap(i, SLEEP, "keepalive") for i in range(8)], stuck=8)
    assert keep is not None and "8 of 8 stuck workers (in keep-alive)" in keep.message
    failed = dataclasses.replace(caps[0], stack=StackCapture(1, None, "python", "", None))
    assert grouped([failed], stuck=1) is None  # no stack, no claim


def test_threads_waiting_for_the_gil_are_counted_from_their_native_frames() -> None:
    gil = (Frame("take_gil", "ceval_gil.c", 300, native=True), Frame("burn", "app.py", 9))
    held = (Frame("burn", "app.py", 9), Frame("run", "threading.py", 975))
    d = grouped([_cap(i, gil) for i in range(5)] + [_cap(5, held)], stuck=6)
    assert d is not None and "5 of 6 wait for the GIL" in d.message


def test_without_cpythons_symbols_the_gil_wait_is_its_condition_wait_not_a_locks() -> None:
    """py-spy --native on CPython 3.11 without symbols (seen): a thread waiting for the GIL
    shows pthread_cond_timedwait right above its Python frame; a thread waiting on a lock
    shows PyThread_acquire_lock_timed: that one is not waiting for the GIL."""
    cond = (
        Frame("0x7f11850a3f16", "libc.so.6", None, native=True),
        Frame("pthread_cond_timedwait", "libc.so.6", None, native=True),
        Frame("spin", "gil.py", 4),
    )
    lock = (
        Frame("PyThread_acquire_lock_timed", "libpython3.11.so", None, native=True),
        Frame("pthread_cond_timedwait", "libc.so.6", None, native=True),
        Frame("Thread._wait_for_tstate_lock", "threading.py", 1139),
    )
    native_only = (Frame("pthread_cond_timedwait", "libc.so.6", None, native=True),)
    d = grouped([_cap(i, cond) for i in range(3)] + [_cap(3, lock), _cap(4, native_only)], 5)
    assert d is not None and "3 of 5 wait for the GIL" in d.message
    assert grouped([_cap(0, lock)], stuck=1) is not None
    assert "GIL" not in (grouped([_cap(0, lock)], stuck=1) or d).message


# -- carried by snapshots ---------------------------------------------------------------------


def test_captures_round_trip_through_the_codec_and_a_recording(tmp_path: Path) -> None:
    snap = snaps(1, states=["working"], current=[in_request(999.0)])[0]
    c = _cap(0, SLEEP)
    snap = dataclasses.replace(snap, stuck=(c,))
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    path = tmp_path / "r.jsonl"
    with RecordingWriter(path) as rec:
        rec.write(snap)
    assert list(read_recording(path)) == [snap]
    old = snap.to_dict()
    del old["stuck"]  # a recording made before captures existed
    assert Snapshot.from_dict(old).stuck == ()


def test_a_crafted_capture_is_refused_with_where() -> None:
    from values.codec import FormatError

    d = dataclasses.replace(snaps(1)[0], stuck=(_cap(0, SLEEP),)).to_dict()
    d["stuck"][0]["stack"]["threads"][0]["frames"] *= 300  # 600 frames
    with pytest.raises(FormatError, match=r"stuck\[0\]\.stack: 600 frames"):
        Snapshot.from_dict(d)


def test_the_event_log_and_run_json_show_the_capture_with_its_request_and_client() -> None:
    c = _cap(3, SLEEP)
    c = dataclasses.replace(
        c,
        episode=dataclasses.replace(
            c.episode, request="GET /sleep?12 HTTP/1.1", client="127.0.0.1:51234"
        ),
    )
    snap = dataclasses.replace(snaps(1)[0], stuck=(c,))
    events = [e for e in EventDeriver().step(snap) if e.kind == "stuck"]
    assert [e.message for e in events] == [
        "worker 3 (pid 103) stuck in one request 10.0 s 'GET /sleep?12 HTTP/1.1' from "
        "127.0.0.1:51234: `app` (wsgiapp.py:7) <- `handle` (sync.py:178)"
    ]
    assert (
        event_line(
            dataclasses.replace(c, episode=dataclasses.replace(c.episode, exact=False)), 1000.0
        ).count("at least 10.0 s")
        == 1
    )
    j = stuck_json(c)
    assert j["stuck_s"] == 10.0 and j["request"] == "GET /sleep?12 HTTP/1.1"
    assert j["stack"]["threads"][0]["frames"][0]["function"] == "app"
    assert j["where"] == "`app` (wsgiapp.py:7) <- `handle` (sync.py:178)"


def test_a_worker_refused_a_second_capture_is_shown_with_its_previous_stack_said_so() -> None:
    """Requests of 5 s back to back: the worker's second episode gets no capture (once a
    minute per worker), and the diagnosis keeps its first stack, saying whose it is."""
    auto = AutoCapture(StuckSettings(2.0, 30), capturer=lambda p, t: stack(p, t))
    try:
        first = snaps(12, workers=1, states=["working"], current=[in_request(999.0)])
        for s in first:
            auto.step(s)
        deadline = time.monotonic() + 10
        while auto.watch.captures == {} and time.monotonic() < deadline:
            time.sleep(0.02)
            auto.step(dataclasses.replace(first[-1], seq=99))
        second = snaps(12, workers=1, states=["working"], current=[in_request(1005.0)])
        second = [dataclasses.replace(s, time=s.time + 6.0) for s in second]
        last = [auto.step(s) for s in second][-1]
    finally:
        auto.close()
    assert auto.episodes == 2 and auto.taken == 1
    d = next(d for d in last.diagnoses if d.rule == "stuck")
    assert d.message.endswith("(1 of the stacks from the worker's previous episode)")


def test_the_run_summary_lists_the_stuck_workers_stacks() -> None:
    import io

    from rich.console import Console

    from lab.summary import RunSummary
    from loadgen.levels import PRESETS
    from text.summary import render_summary

    s = RunSummary("prefork", "prefork", PRESETS["slow-io"])
    s.stuck, s.stuck_episodes = [_cap(i, SLEEP) for i in range(10)], 12
    out = io.StringIO()
    render_summary(Console(file=out, width=200), s)
    text = out.getvalue()
    assert "stuck workers: 12 episodes, 10 stacks taken" in text
    assert "worker 0 (pid 100) stuck in one request 10.0 s: `app` (wsgiapp.py:7)" in text
    assert "... 2 more (--json lists them all)" in text


def test_a_worker_holding_several_idle_connections_is_not_stuck() -> None:
    """An event loop holding 20 idle keep-alive clients waits on all of them and serves
    others: not stuck (seen: an attached many_accepts worker read as stuck in keep-alive);
    a worker pinned by its one keep-alive client is; a loop running a handler is."""
    watch = StuckWatch(stuck_after=1.0)
    base = synthetic.snapshot(workers=3)
    workers = [
        dataclasses.replace(base.workers[0], state=WorkerState.KEEPALIVE, connections=20),
        dataclasses.replace(base.workers[1], state=WorkerState.KEEPALIVE, connections=1),
        dataclasses.replace(base.workers[2], state=WorkerState.WORKING, connections=5),
    ]
    found = []
    for i in range(4):
        snap = dataclasses.replace(base, time=base.time + i, workers=tuple(workers))
        found += watch.step(snap)
    assert {e.slot for e in found} == {1, 2}, found


def test_the_system_call_a_worker_waits_in_decides_and_is_said() -> None:
    """Read from /proc/PID/syscall (values.blocked): one idle keep-alive client of a
    worker parked in epoll_wait or poll on many fds is not stuck (nginx, uvicorn, Node);
    one in a read of its client (gunicorn sync, half a request) is, and so is one poll()
    on its one client (Apache prefork's keep-alive read) or a loop blocked in a sleep while
    it holds 20 clients (the exemption for several connections needs no evidence against
    it). The episode and its event line say the call read."""
    watch = StuckWatch(stuck_after=1.0)
    base = synthetic.snapshot(workers=6)
    keep, reading = WorkerState.KEEPALIVE, WorkerState.READING
    rows = [
        (keep, 1, Blocked("epoll_wait", 7, False)),
        (keep, 1, Blocked("poll", nfds=3)),
        (reading, 1, Blocked("recvfrom", 9, True)),
        (keep, 1, Blocked("poll", nfds=1)),
        (keep, 20, Blocked("clock_nanosleep")),
        (keep, 1, Blocked("epoll_wait", 7, False, others_busy=1)),  # a pool thread busy
    ]
    workers = [
        dataclasses.replace(base.workers[i], state=st, connections=n, blocked=b, state_age_s=None)
        for i, (st, n, b) in enumerate(rows)
    ]
    found = []
    for i in range(4):
        snap = dataclasses.replace(base, time=base.time + i, workers=tuple(workers))
        found += watch.step(snap)
    assert {e.slot: e.blocked for e in found} == {
        2: "in recvfrom on socket fd 9",
        3: "in poll on 1 fd",
        4: "in clock_nanosleep",
        5: "in epoll_wait, 1 other thread busy",
    }, found
    e = next(e for e in found if e.slot == 2)
    cap = StuckCapture(e, e.since + 2, stack(e.pid, e.tid))
    line = event_line(cap, e.since + 2)
    assert line.startswith("worker 2 (pid ") and "stuck reading at least 2.0 s (in recvfrom" in line
    assert stuck_json(cap)["blocked"] == "in recvfrom on socket fd 9"
    assert Blocked("running").words() == "running on a CPU"
