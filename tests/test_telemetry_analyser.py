"""Measuring apart from judging: the counters behind interval figures, the one analyser
that annotates raw snapshots, and the vocabulary snapshots carry (enums whose values are
the strings recordings hold)."""

from __future__ import annotations

import dataclasses
import json

from servers.scoreboard import GLYPHS as SCOREBOARD_GLYPHS
from servers.scoreboard import State
from telemetry import synthetic
from telemetry.analyser import Analyser
from telemetry.reading import Counter, WorkerDeltas
from telemetry.snapshot import (
    GLYPHS,
    ImbalanceSet,
    Kind,
    Severity,
    Snapshot,
    WorkerState,
)


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
