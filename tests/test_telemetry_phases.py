"""The analyser's window of request phases (issue 16): the latest cumulative reading minus
the one just before the window, per worker and overall, None when unmeasured."""

from __future__ import annotations

import dataclasses

import synthetic
from judging import analysis
from judging.analyser import Analyser
from values import units
from values.snapshot import Phases, Snapshot


def _with_phases(snap: Snapshot, per_worker: list[Phases | None]) -> Snapshot:
    workers = tuple(
        dataclasses.replace(w, phases=p) for w, p in zip(snap.workers, per_worker, strict=True)
    )
    return dataclasses.replace(snap, workers=workers, phases=synthetic._overall(per_worker))


def _stream(values_ms: list[float], period: float = 0.25, workers: int = 2) -> list[Snapshot]:
    """Snapshots whose cumulative queue wait gains 10 connections per worker per interval,
    each waiting values_ms[k] in interval k."""
    analyser = Analyser(window_s=5.0)
    out = []
    cum = [synthetic.hist(0, 0)] * workers
    for k, v in enumerate(values_ms):
        cum = [h.plus(synthetic.hist(v, 10)) for h in cum]
        raw = synthetic.snapshot(seq=k, time=1000.0 + k * period, workers=workers)
        raw = _with_phases(raw, [Phases(queue=h, server=h, service=h) for h in cum])
        out.append(analyser.annotate(raw))
    return out


def test_the_window_holds_only_what_was_recorded_within_it() -> None:
    # 30 intervals of 1 ms, then 20 of 100 ms: the 5 s window (20 intervals) sees 100 ms only
    snaps = _stream([1.0] * 30 + [100.0] * 20)
    last = snaps[-1]
    assert last.phases is not None and last.phases.queue is not None
    assert last.phases.queue.count == 50 * 10 * 2
    win = last.window_phases
    assert win is not None and win.queue is not None
    assert win.queue.count == 20 * 10 * 2
    assert abs((win.queue.quantile_ms(0.01) or 0) - 100.0) <= 100.0 * 0.0625
    for w in last.workers:
        assert w.window_phases is not None and w.window_phases.service is not None
        assert w.window_phases.service.count == 20 * 10
    # the cumulative p50 still reads 1 ms: the window is what moved
    assert abs((last.phases.queue.quantile_ms(0.5) or 0) - 100.0) > 50


def test_before_the_window_fills_it_holds_everything_since_the_start() -> None:
    snaps = _stream([3.0] * 5)
    win = snaps[-1].window_phases
    assert win is not None and win.queue is not None and win.queue.count == 5 * 10 * 2


def test_unmeasured_phases_stay_none_in_the_window() -> None:
    snaps = synthetic.series(30)
    assert snaps[-1].phases is None and snaps[-1].window_phases is None
    assert all(w.window_phases is None for w in snaps[-1].workers)


def test_queue_wait_alone_leaves_the_other_phases_unknown() -> None:
    # attach with eBPF: the whole server's queue wait only, no scoreboard phases
    snaps = synthetic.series(30, queue_ms=20.0, worker_phases=False)
    win = snaps[-1].window_phases
    assert win is not None and win.queue is not None and win.queue.count > 0
    assert win.server is None and win.service is None
    assert all(w.window_phases is None for w in snaps[-1].workers)


def test_a_respawned_worker_counts_from_its_own_start() -> None:
    snaps = _stream([1.0] * 30)
    analyser = Analyser(window_s=5.0)
    for s in snaps:
        analyser.annotate(s)
    # worker 0 respawns (generation 2) with a fresh histogram holding 3 values
    last = snaps[-1]
    fresh = synthetic.hist(7.0, 3)
    w0 = dataclasses.replace(
        last.workers[0], generation=2, phases=Phases(queue=fresh, server=fresh, service=fresh)
    )
    raw = dataclasses.replace(
        last, seq=last.seq + 1, time=last.time + 0.25, workers=(w0, *last.workers[1:])
    )
    out = analyser.annotate(raw)
    got = out.workers[0].window_phases
    assert got is not None and got.queue is not None and got.queue.count == 3


def test_phases_minus_keeps_none_and_whole_run_is_last_minus_first() -> None:
    a = Phases(queue=synthetic.hist(1.0, 5), server=None, service=synthetic.hist(2.0, 5))
    b = Phases(
        queue=synthetic.hist(1.0, 5).plus(synthetic.hist(50.0, 4)),
        server=None,
        service=synthetic.hist(2.0, 9),
    )
    d = analysis.phases_minus(b, a)
    assert d is not None and d.server is None
    assert d.queue is not None and d.queue.count == 4 and d.queue.max_us <= 50_000 * 1.0625
    assert d.service is not None and d.service.count == 4
    assert analysis.phases_minus(None, a) is None
    assert analysis.phases_minus(b, None) is b


def test_durations_read_short() -> None:
    assert units.dur(4200.0) == "4.2 s"
    assert units.dur(12.3) == "12 ms"
    assert units.dur(1.46) == "1.5 ms"
    assert units.dur(0.85) == "850 µs"
    assert units.dur(15_000.0, space=False) == "15s"
    assert units.dur(None) == "-"
    assert max(len(units.dur(x, space=False)) for x in (0.999, 9.99, 999.4, 9999.4)) <= 5


def test_a_snapshot_with_phases_reads_back_equal_from_json() -> None:
    import json

    snap = synthetic.series(25, queue_ms=[4200.0, 1.0], server_ms=0.3, service_ms=2.0)[-1]
    assert snap.window_phases is not None
    back = Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert back == snap


def test_a_worker_whose_reading_stands_still_has_an_empty_window_and_then_its_news() -> None:
    analyser = Analyser(window_s=1.0)
    still = Phases(queue=synthetic.hist(5.0, 40), server=None, service=synthetic.hist(1.0, 40))
    out = []
    for k in range(12):  # the same Phases object every sample (an idle slot)
        raw = synthetic.snapshot(seq=k, time=1000.0 + k * 0.25, workers=1)
        out.append(analyser.annotate(_with_phases(raw, [still])))
    win = out[-1].workers[0].window_phases
    assert win is not None and win.queue is not None and win.queue.count == 0
    assert win.server is None
    moved = Phases(
        queue=still.queue.plus(synthetic.hist(300.0, 2)),  # type: ignore[union-attr]
        server=None,
        service=synthetic.hist(1.0, 42),
    )
    raw = synthetic.snapshot(seq=12, time=1003.0, workers=1)
    win = analyser.annotate(_with_phases(raw, [moved])).workers[0].window_phases
    assert win is not None and win.queue is not None and win.queue.count == 2
    assert abs((win.queue.quantile_ms(0.5) or 0) - 300.0) <= 300.0 * 0.0625
