"""What a run's summary, `compare` and the load generator's own warning say (issue 22): the
whole-run figures cover the load, what follows it is labelled teardown; a compare row's
figures agree with each other; a warning judged on one moment does not stay up."""

from __future__ import annotations

import dataclasses

from lab.aggregate import SummaryBuilder
from loadgen.levels import PRESETS
from telemetry import synthetic
from telemetry.snapshot import Diagnosis, Snapshot


def _at(t: float, totals: list[int], accepts: list[int], **client: object) -> Snapshot:
    s = synthetic.snapshot(time=1000.0 + t, workers=4, accepts=accepts, accepts_total=totals)
    if client:
        c = synthetic.load_stats(time=1000.0 + t)
        s = dataclasses.replace(s, client=dataclasses.replace(c, **client))
    return s


def test_the_queue_draining_after_the_load_is_teardown_not_a_finding() -> None:
    """prefork --max-workers 32 under keepalive-idle for 12 s reported "accept skew: worker
    28 took 51%" at 14.2 s (the queue draining after the load), and the whole-run Jain
    counted those accepts."""
    level = PRESETS["keepalive-idle"].with_(duration=12)
    b = SummaryBuilder("prefork", "prefork (max-workers=4)", level)
    b.start_clock(1000.0)
    b.add(_at(0.0, [0, 0, 0, 0], [0, 0, 0, 0]))  # baseline, before the load
    for k in range(1, 49):  # 12 s of load, even: 10 accepts a worker each second
        t = 0.25 * k
        b.add(_at(t, [int(10 * t)] * 4, [2, 3, 2, 3], running=True, elapsed=t))
    skew = Diagnosis("accept_skew", "warning", "accept skew: worker 2 took 51% of accepts")
    for k in range(1, 9):  # the drain, then the queue emptying to worker 2
        t = 12.0 + 0.25 * k
        snap = _at(t, [120, 120, 120 + 30 * k, 120], [0, 0, 30, 0], running=k < 4,
                   draining=k < 4, elapsed=min(t, 12.5))  # fmt: skip
        b.add(dataclasses.replace(snap, diagnoses=(skew,)))
    s = b.finish(None, duration_s=12.0)
    assert [w.accepts for w in s.workers] == [120, 120, 120, 120]
    assert s.accept_jain == 1.0
    assert s.rules_seen() == []
    assert s.teardown_accepts == 240
    assert [(d.rule, d.first_s) for d in s.teardown_diagnoses] == [("accept_skew", 12.25)]
    d = s.to_json_dict()
    assert d["diagnoses"] == [] and d["teardown"]["accepts"] == 240
    assert d["teardown"]["diagnoses"][0]["message"].startswith("accept skew: worker 2")
    phases = [row["phase"] for row in s.series]
    assert phases.count("teardown") == 8 and phases[:48] == ["load"] * 48
