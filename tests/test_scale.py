"""Scale (issue 18): proc_spawn with 1,024 workers, every one of them in the snapshot with
its own figures. No timing asserts: the start time is bench/bench_sampler.py's figure."""

from __future__ import annotations

import pytest

from conftest import assert_all_gone, get, wait_until
from judging.analyser import Analyser
from servers.config import ServerConfig
from servers.scoreboard import DEFAULT_SLOTS
from servers.supervisor import Supervisor
from sources.sampler import Sampler

N = 1024


@pytest.mark.timeout(300)
def test_1024_proc_spawn_workers_come_up_and_are_all_in_the_snapshot() -> None:
    assert DEFAULT_SLOTS >= N
    sup = Supervisor(ServerConfig(model="proc_spawn", workers=N))
    pids: list[int] = []
    sampler = None
    try:
        sup.start(timeout=240)  # a loaded 2-core box forks slowly; the bench times it
        pids = sup.pids()  # the root and its workers
        workers = set(sup.worker_pids())
        assert len(workers) == N
        sampler, analyser = Sampler.for_supervisor(sup), Analyser()
        analyser.annotate(sampler.sample())
        for _ in range(40):
            assert get(sup.port).status == 200
        # the accepts land in the scoreboard as each request finishes
        wait_until(lambda: sup.read().totals()["requests"] >= 41, 30, "40 requests counted")
        snap = analyser.annotate(sampler.sample())
        live = snap.live_workers
        assert len(live) == N
        assert sorted(w.slot for w in live) == list(range(N))
        assert {w.pid for w in live} == workers
        # every worker read from /proc (no fd limit hit): CPU and RSS known for all
        assert all(w.cpu_percent is not None and w.rss_bytes for w in live)
        assert sum(w.accepts or 0 for w in live) == 40
        assert snap.model is not None and snap.model.processes == N + 1
    finally:
        if sampler is not None:
            sampler.close()
        sup.stop()
        assert_all_gone(pids, timeout=60)
