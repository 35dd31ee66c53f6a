"""Measuring apart from judging: the counters behind interval figures, the one analyser
that annotates raw snapshots, and the vocabulary snapshots carry (enums whose values are
the strings recordings hold)."""

from __future__ import annotations

import dataclasses
import json

import synthetic
from judging.analyser import Analyser
from servers.slots import GLYPHS as SCOREBOARD_GLYPHS
from servers.slots import State
from sources.reading import Counter, WorkerDeltas
from values.findings import ImbalanceSet, Severity
from values.snapshot import GLYPHS, Kind, Snapshot, WorkerState


def test_a_counter_gives_the_rise_since_the_previous_round_and_forgets_absent_keys() -> None:
    c: Counter[int] = Counter()
    c.begin()
    assert c.delta("a", 10) is None and c.delta("b", 5) is None  # no previous round
    c.end()
    c.begin()
    assert c.delta("a", 14) == 4
    assert c.delta("c", 7) is None and c.delta("c2", 7, since_start=True) == 7
    assert c.delta("d", None) is None
    c.end()  # "b" was not given: forgotten
    c.begin()
    assert c.delta("b", 9) is None
    assert c.delta("a", 3) == 0  # a counter that went back (reset) never gives a negative
    c.end()


def test_worker_deltas_give_cpu_percent_and_a_new_workers_own_accepts() -> None:
    d = WorkerDeltas()
    d.begin(None)
    assert d((0, 10, 1), True, 1.0, 5, 5) == (None, None, None)  # the first sample
    d.end()
    d.begin(0.5)
    assert d((0, 10, 1), True, 1.25, 8, 9) == (50.0, 3, 4)
    # a respawn in slot 1 since the last sample: its accepts were made in this interval
    assert d((1, 11, 2), True, 0.1, 2, 2) == (None, 2, 2)
    assert d((2, 0, 0), False, None, 0, 0) == (None, None, None)  # an empty slot
    d.end()


def _starving(k: int) -> Snapshot:
    return synthetic.snapshot(
        seq=k, time=1000 + 0.25 * k, workers=4, states=["keepalive"], cpu=[0.1], queue=9
    )


def test_the_analyser_judges_raw_snapshots_and_holds_a_phenomenon_for_a_while() -> None:
    raw = [_starving(k) for k in range(8)]
    assert all(s.diagnoses == () and s.imbalance == ImbalanceSet() for s in raw)
    analyser = Analyser(window_s=2.0)
    seen = [analyser.annotate(s) for s in raw]
    assert [d.rule for d in seen[-1].diagnoses] == ["starvation"]
    assert seen[-1].window_s == 2.0 and seen[-1].imbalance.connections is not None
    assert seen[-1].diagnoses[0].severity == Severity.CRITICAL
    # the clients go: the banner stays (marked) for HOLD_S, then goes
    quiet = [synthetic.snapshot(seq=k, time=1000 + 0.25 * k, workers=4) for k in range(8, 30)]
    after = [analyser.annotate(s) for s in quiet]
    assert after[0].diagnoses and after[0].diagnoses[0].message.endswith("(last seen 1 s ago)")
    assert after[-1].diagnoses == ()


def test_synthetic_series_are_judged_by_the_same_analyser() -> None:
    kw = {"workers": 4, "accepts": [10, 0, 0, 0]}
    analyser = Analyser()
    by_hand = [analyser.annotate(s) for s in synthetic.series(12, analyse=False, **kw)]
    assert synthetic.series(12, **kw) == by_hand
    assert "accept_skew" in {d.rule for d in by_hand[-1].diagnoses}


def test_states_and_kinds_are_enums_whose_values_recordings_carry() -> None:
    snap = synthetic.series(2, workers=2, threads=True, states=["keepalive", "dead"])[-1]
    text = json.dumps(snap.to_dict())
    assert '"state": "keepalive"' in text and '"kind": "thread"' in text
    back = Snapshot.from_dict(json.loads(text))
    assert back == snap
    w0, w1 = back.workers
    assert type(w0.state) is WorkerState and w0.state is WorkerState.KEEPALIVE
    assert type(w0.kind) is Kind and w0.is_thread
    assert w0.alive and not w1.alive and w0.busy and not w1.busy
    assert dataclasses.replace(w0, state=WorkerState.EMPTY).alive is False


def test_glyphs_are_the_scoreboards_plus_unknown() -> None:
    for st in State:
        assert GLYPHS[WorkerState(st.name.lower())] == SCOREBOARD_GLYPHS[st]
    assert GLYPHS[WorkerState.UNKNOWN] == "?"
    assert GLYPHS["keepalive"] == "K"  # plain strings still look up (renderers)


def test_the_running_imbalance_sums_equal_a_naive_recount_of_the_window() -> None:
    """ImbalanceTracker keeps running sums per worker (for speed); over a random stream of
    births, deaths, respawns and unmeasured figures they must equal a recount of the
    window from scratch."""
    import dataclasses
    import random

    from judging import analysis

    rnd = random.Random(7)
    tracker = analysis.ImbalanceTracker()
    win: list[Snapshot] = []
    states = [WorkerState.WAITING, WorkerState.READING, WorkerState.DEAD, WorkerState.EMPTY]
    for k in range(200):
        snap = synthetic.snapshot(seq=k, time=1000 + 0.25 * k, workers=10)
        ws = [
            dataclasses.replace(
                w,
                accepts=rnd.choice([None, 0, 1, 5]),
                connections=rnd.choice([None, 0, 2]),
                cpu_percent=rnd.choice([None, 0.0, 12.5, 80.0]),
                state=rnd.choice(states) if rnd.random() < 0.1 else w.state,
                generation=w.generation + (k // 30 if i == 3 else 0),
            )
            for i, w in enumerate(snap.workers)
        ]
        snap = dataclasses.replace(snap, workers=tuple(ws), interval_s=rnd.choice([None, 0.25]))
        cutoff = snap.time - 5.0 + 1e-6
        tracker.add(snap)
        tracker.evict(cutoff)
        win = [s for s in [*win, snap] if s.time > cutoff]
        # the naive recount: workers alive in every snapshot of the window
        keys = None
        for s in win:
            alive = {w.key for w in s.workers if w.alive and w.is_worker}
            keys = alive if keys is None else keys & alive
        per: dict[str, dict] = {"accepts": {}, "connections": {}, "cpu": {}}
        measured = {"accepts": False, "connections": False, "cpu": False}
        n_conn: dict = {}
        for s in win:
            iv = s.interval_s
            for w in s.workers:
                if not (w.alive and w.is_worker):
                    continue
                if w.accepts is not None and iv is not None:
                    measured["accepts"] = True
                if w.connections is not None:
                    measured["connections"] = True
                if w.cpu_percent is not None and iv:
                    measured["cpu"] = True
                if w.key not in keys:
                    continue
                lab = w.label
                a = per["accepts"].setdefault(w.key, [lab, 0.0])
                c = per["connections"].setdefault(w.key, [lab, 0.0])
                u = per["cpu"].setdefault(w.key, [lab, 0.0])
                if w.accepts is not None and iv is not None:
                    a[1] += w.accepts
                if w.connections is not None:
                    c[1] += w.connections
                    n_conn[w.key] = n_conn.get(w.key, 0) + 1
                if w.cpu_percent is not None and iv:
                    u[1] += w.cpu_percent * iv / 100.0
        for key, lc in per["connections"].items():
            lc[1] = lc[1] / n_conn[key] if n_conn.get(key) else 0.0
        span = sum(s.interval_s or 0.0 for s in win)
        got = tracker.result()
        for metric in ("accepts", "connections", "cpu"):
            want = (
                analysis.measure(metric, {k: (v[0], v[1]) for k, v in per[metric].items()}, span)
                if measured[metric]
                else None
            )
            have = getattr(got, metric)
            if want is None or have is None:
                assert have == want, (k, metric)
                continue
            assert have.n == want.n, (k, metric)
            assert abs(have.total - want.total) < 1e-6, (k, metric)
            # (the top worker by name only when not a float tie: running sums of CPU
            # seconds and a recount differ in their last bits)
            assert abs((have.top_share or 0) - (want.top_share or 0)) < 1e-6, (k, metric)
            assert (have.jain is None) == (want.jain is None), (k, metric)
            if want.jain is not None:
                assert abs(have.jain - want.jain) < 1e-6, (k, metric)
