"""Snapshot JSON round trip, recordings, imbalance measures."""

from __future__ import annotations

import dataclasses
import json

import pytest

import synthetic
from judging import analysis
from values.codec import FormatError
from values.recording import FORMAT_NAME, RecordingWriter, read_recording
from values.snapshot import FORMAT_VERSION, Snapshot


def _rich_snapshot() -> Snapshot:
    client = synthetic.load_stats(errors={"refused": 3, "reset": 1})
    [*_, snap] = synthetic.series(
        6,
        workers=3,
        accepts=[9, 1, 0],
        connections=[2, 1, 0],
        cpu=[50.0, 5.0, 0.0],
        client=client,
        queue=4,
    )
    return snap


def test_round_trip_through_json_is_equal() -> None:
    snap = _rich_snapshot()
    d = json.loads(json.dumps(snap.to_dict()))
    assert d["version"] == FORMAT_VERSION
    back = Snapshot.from_dict(d)
    assert back == snap
    assert back.client is not None and back.client.status == {200: 10_000}
    assert back.imbalance.accepts is not None and back.imbalance.accepts.jain is not None


def test_unknown_version_is_refused() -> None:
    d = _rich_snapshot().to_dict()
    d["version"] = 999
    with pytest.raises(FormatError, match="version"):
        Snapshot.from_dict(d)


def test_recording_yields_back_what_was_written(tmp_path) -> None:
    snaps = synthetic.series(10, workers=2, accepts=[3, 1], client=synthetic.load_stats())
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path, meta={"model": "many_accepts"}) as rec:
        for s in snaps:
            rec.write(s)
    header = json.loads(path.read_text().splitlines()[0])
    assert (header["format"], header["version"]) == (FORMAT_NAME, FORMAT_VERSION)
    assert header["meta"] == {"model": "many_accepts"}
    assert list(read_recording(path)) == snaps
    # a line cut by a kill is skipped, not an error
    with open(path, "a") as f:
        f.write('{"seq": 1')
    assert list(read_recording(path)) == snaps


def test_recording_without_header_is_refused(tmp_path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(FormatError, match="not a serverscope recording"):
        list(read_recording(path))


def test_jain_and_shares() -> None:
    assert analysis.jain([5, 5, 5, 5]) == pytest.approx(1.0)
    assert analysis.jain([4, 0, 0, 0]) == pytest.approx(0.25)
    assert analysis.jain([0, 0, 0]) is None
    assert analysis.jain([]) is None
    imb = analysis.measure(
        "accepts", {(i,): (f"worker {i}", x) for i, x in enumerate([339, 61, 0, 0])}, 5.0
    )
    assert imb.top_worker == "worker 0"
    assert imb.top_share == pytest.approx(339 / 400)
    assert imb.max_over_mean == pytest.approx(4 * 339 / 400)
    assert imb.jain == pytest.approx(400**2 / (4 * (339**2 + 61**2)))


def test_window_without_events_has_no_index() -> None:
    [*_, snap] = synthetic.series(8, workers=4, accepts=[0])
    assert snap.imbalance.accepts is not None
    assert snap.imbalance.accepts.jain is None
    assert snap.imbalance.accepts.top_share is None
    assert snap.imbalance.cpu is not None and snap.imbalance.cpu.jain is None


def test_window_is_sliding() -> None:
    snaps = synthetic.series(40, period=0.25, workers=2, accepts=[1, 1], analyse=False)
    # a burst on worker 0 long ago must not count 5 s later
    burst = synthetic.snapshot(time=990.0, workers=2, accepts=[100, 0])
    win = analysis.window([burst, *snaps], 5.0)
    assert burst not in win
    imb = analysis.imbalance_set(win).accepts
    assert imb is not None and imb.jain == pytest.approx(1.0)
    assert imb.window_s == pytest.approx(5.0)


def test_respawned_worker_is_another_worker() -> None:
    a = synthetic.snapshot(workers=2, accepts=[5, 5])
    w0 = a.workers[0]
    reborn = dataclasses.replace(w0, pid=w0.pid + 100, tid=w0.tid + 100, generation=2)
    assert reborn.key != w0.key


def test_roles_round_trip_and_old_recordings_read_as_workers() -> None:
    from values.snapshot import Role

    snap = synthetic.snapshot(workers=3, threads=True, roles=["worker", "worker", "listener"])
    d = json.loads(json.dumps(snap.to_dict()))
    assert [w["role"] for w in d["workers"]] == ["worker", "worker", "listener"]
    back = Snapshot.from_dict(d)
    assert back == snap and back.workers[2].role is Role.LISTENER
    for w in d["workers"]:  # a recording made before roles existed
        del w["role"]
    old = Snapshot.from_dict(d)
    assert [w.role for w in old.workers] == [Role.WORKER] * 3
    d["workers"][0]["role"] = "boss"
    with pytest.raises(FormatError, match="boss"):
        Snapshot.from_dict(d)


def test_a_thread_recorded_with_the_old_thread_role_reads_as_a_folded_helper() -> None:
    """Role.THREAD went (Kind.THREAD says it): a recording that wrote role "thread" for an
    attached process's thread rows still reads, each a HELPER row folded under its process."""
    from values.snapshot import Kind, Role

    snap = synthetic.snapshot(workers=2, threads=True)
    d = json.loads(json.dumps(snap.to_dict()))
    d["workers"][1]["role"] = "thread"
    back = Snapshot.from_dict(d)
    w = back.workers[1]
    assert w.kind is Kind.THREAD and w.role is Role.HELPER and w.folded
    assert not w.is_worker and not back.workers[0].folded
    assert "thread" not in {r.value for r in Role}


def test_the_runs_accept_share_outlives_the_window() -> None:
    # burst: 20 accepts at the start, none in the last 5 s; the scoreboard totals remain
    [*_, snap] = synthetic.series(30, workers=4, accepts_total=[19, 1, 0, 0])
    assert snap.imbalance.accepts is not None and snap.imbalance.accepts.jain is None
    run = analysis.run_accepts(snap)
    assert run is not None and run.top_share == pytest.approx(0.95)
    assert run.top_worker == "worker 0" and run.n == 4


def test_the_scoreboard_title_counts_worker_threads_not_listeners() -> None:
    from tui.frame import Frame
    from tui.scoreboard_grid import summary

    # event: 3 processes x 25 threads + 3 listener threads ("78 threads" before)
    snap = synthetic.snapshot(
        workers=78, threads=True, roles=["worker"] * 75 + ["listener"] * 3, model="event"
    )
    assert summary(Frame(snap), 200).startswith("scoreboard · 75 threads in 3 processes")


def test_run_accepts_is_measure_over_every_workers_run_total() -> None:
    """run_accepts skips building a label per worker (for speed): it must still be what
    `measure` gives over {key: (label, accepts_total)}, ties and empty slots included."""
    import dataclasses

    import synthetic
    from judging import analysis
    from values.snapshot import Role, WorkerState

    base = synthetic.snapshot(seq=1, time=100.0, workers=6)
    totals = [5, 9, 9, 0, 7, None]
    workers = [
        dataclasses.replace(w, accepts_total=t) for w, t in zip(base.workers, totals, strict=True)
    ]
    workers[3] = dataclasses.replace(workers[3], state=WorkerState.EMPTY, accepts_total=40)
    workers[4] = dataclasses.replace(workers[4], role=Role.LISTENER, accepts_total=99)
    snap = dataclasses.replace(base, workers=tuple(workers))
    per = {
        w.key: (w.label, float(w.accepts_total))
        for w in snap.workers
        if w.is_worker and w.state != WorkerState.EMPTY and w.accepts_total is not None
    }
    assert analysis.run_accepts(snap) == analysis.measure("accepts", per, 0.0)
    assert analysis.run_accepts(snap).top_worker == workers[1].label  # the first of the ties
    idle = dataclasses.replace(
        snap, workers=tuple(dataclasses.replace(w, accepts_total=0) for w in workers)
    )
    assert analysis.run_accepts(idle) == analysis.measure(
        "accepts",
        {
            w.key: (w.label, 0.0)
            for w in idle.workers
            if w.is_worker and w.state != WorkerState.EMPTY
        },
        0.0,
    )
