"""The event log derived from successive snapshots (no processes needed)."""

from __future__ import annotations

from dataclasses import replace

import synthetic
from judging.events import EventDeriver


def log_of(snaps) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    deriver = EventDeriver()
    return [(e.kind, e.message) for snap in snaps for e in deriver.step(snap)]


def test_an_overflow_episode_is_one_start_and_one_end():
    queues = [511, 511, 400, 511, 300, 511] + [0] * 8  # hovering at the limit, then draining
    snaps = [
        synthetic.snapshot(seq=i, time=100 + 0.25 * i, queue=q, limit=511)
        for i, q in enumerate(queues)
    ]
    overflow = [m for k, m in log_of(snaps) if k == "overflow"]
    assert overflow == [
        "accept queue overflow started, queue 511/511",
        "accept queue overflow ended, queue 0/511",
    ]


def test_someone_elses_overflow_counter_is_not_ours():
    snaps = [
        synthetic.snapshot(seq=i, time=100 + 0.25 * i, queue=2, overflows_delta=50)
        for i in range(8)
    ]
    assert [m for k, m in log_of(snaps) if k == "overflow"] == []


def test_deaths_and_spawns_are_logged():
    a = synthetic.snapshot(seq=0, time=100.0)
    assert a.model is not None
    b = replace(
        a,
        seq=1,
        time=100.25,
        model=replace(
            a.model, deaths=1, spawns=(a.model.spawns or 0) + 1, last_death_pid=42,
            last_death_status=-9,
        ),
    )  # fmt: skip
    log = log_of([a, b])
    assert ("death", "worker pid 42 died (signal 9)") in log
    assert ("spawn", "master spawned 1 worker") in log
