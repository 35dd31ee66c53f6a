"""Each diagnosis rule fires on a synthetic window that shows its phenomenon, and stays
quiet on one that does not."""

from __future__ import annotations

import synthetic
from judging import diagnosis, gil, master
from judging import server_wait as wait_rule
from judging.analyser import Analyser
from values.snapshot import Snapshot


def _last(**kw):  # type: ignore[no-untyped-def]
    return synthetic.series(kw.pop("count", 20), **kw)


def _rules(snaps) -> set[str]:  # type: ignore[no-untyped-def]
    return {d.rule for d in snaps[-1].diagnoses}


def test_accept_skew_fires() -> None:
    win = _last(workers=4, accepts=[10, 2, 1, 1])
    d = diagnosis.accept_skew(win)
    assert d is not None
    assert d.message == (
        "accept skew: worker 0 took 71% of accepts "
        "(Jain 0.46, 4 workers; p < 1e-9 over 280 accepts in 5 s, 71% of all 280 counted)"
    )
    assert "accept_skew" in _rules(win)


def test_accept_skew_fires_on_connections_held_after_a_burst() -> None:
    # 20 keep-alive clients connected at once; the accepts have left the window
    win = _last(workers=4, accepts=[0], connections=[14, 4, 2, 0])
    d = diagnosis.accept_skew(win)
    assert d is not None
    assert d.message == (
        "accept skew: worker 0 holds 70% of open connections "
        "(Jain 0.46, 4 workers; p < 0.001 over 20 connections, held through 5 s)"
    )
    # 10/7/3/0 read as skew before: an even spread gives one as uneven once in 110 (p 0.009)
    assert diagnosis.accept_skew(_last(workers=4, accepts=[0], connections=[10, 7, 3, 0])) is None


def test_accept_skew_not_judged_on_connections_while_plenty_of_accepts_spread_evenly() -> None:
    # reuseport under a Connection: close storm: ~1,000 accepts a second each, spread
    # evenly; at one instant worker 3 held 13 of 19 short-lived connections and the rule
    # named a skew of open connections (seen 0.7 s into the reuseport screenshot)
    win = _last(workers=4, accepts=[250, 240, 260, 250], connections=[2, 2, 2, 13])
    assert diagnosis.accept_skew(win) is None


def test_accept_skew_quiet_on_one_connection_workers_or_even_spread() -> None:
    # prefork-like: 3 of 16 workers hold their one connection each
    assert diagnosis.accept_skew(_last(workers=16, connections=[1, 1, 1] + [0] * 13)) is None
    assert diagnosis.accept_skew(_last(workers=4, connections=[5, 5, 6, 4])) is None
    assert diagnosis.accept_skew(_last(workers=4, connections=[3, 1, 0, 0])) is None  # too few


def test_accept_skew_quiet_when_even_or_too_few() -> None:
    assert diagnosis.accept_skew(_last(workers=4, accepts=[5, 5, 4, 5])) is None
    assert diagnosis.accept_skew(_last(count=4, workers=4, accepts=[3, 0, 0, 0])) is None
    assert diagnosis.accept_skew(_last(workers=4, accepts=[0])) is None


def test_starvation_fires() -> None:
    win = _last(workers=256, states=["keepalive"], cpu=[0.03], queue=511, limit=511, drops_delta=9)
    d = diagnosis.starvation(win)
    assert d is not None
    assert d.message.startswith("starvation: 256/256 workers busy, CPU ")
    assert "accept queue 511/511, 36 SYN drops/s" in d.message
    assert d.severity == "critical"


def test_starvation_quiet() -> None:
    # one worker free
    states = ["keepalive"] * 255 + ["waiting"]
    assert diagnosis.starvation(_last(workers=256, states=states, queue=50)) is None
    # all busy but burning CPU: overload, not starvation
    assert diagnosis.starvation(_last(workers=4, states=["working"], cpu=[95.0], queue=50)) is None
    # all busy, nobody waiting
    assert diagnosis.starvation(_last(workers=4, states=["keepalive"], queue=0)) is None
    # busy for too short a time
    assert diagnosis.starvation(_last(count=2, workers=4, states=["keepalive"], queue=9)) is None
    # event loops each holding several keep-alive connections are not pinned
    busy_loops = _last(workers=4, states=["keepalive"], connections=[5], queue=3)
    assert diagnosis.starvation(busy_loops) is None


def test_accept_queue_overflow_fires() -> None:
    d = diagnosis.accept_queue_overflow(_last(queue=511, limit=511, overflows_delta=5))
    assert d is not None
    assert d.message.startswith("accept queue overflow: port 8080 queue 511/511")
    assert "20 ListenOverflows/s (namespace-wide)" in d.message
    # counter moving while our queue is nearly full
    d = diagnosis.accept_queue_overflow(_last(queue=500, limit=511, overflows_delta=2))
    assert d is not None


def test_accept_queue_overflow_quiet() -> None:
    assert diagnosis.accept_queue_overflow(_last(queue=100, limit=511)) is None
    # the namespace counter moves because of someone else's socket: ours is far from full
    assert diagnosis.accept_queue_overflow(_last(queue=3, limit=511, overflows_delta=7)) is None


def test_master_bottleneck_fires() -> None:
    win = _last(model="cluster", master_cpu=98.0, cpu=[20.0], dispatches_delta=50)
    d = master.master_bottleneck(win)
    assert d is not None
    assert d.message == "master bottleneck: cluster master 98% CPU, workers 20%"


def test_master_bottleneck_quiet() -> None:
    assert master.master_bottleneck(_last(model="cluster", master_cpu=30.0, cpu=[20.0])) is None
    assert master.master_bottleneck(_last(model="cluster", master_cpu=98.0, cpu=[90.0])) is None
    # no dispatching master (many_accepts master busy for another reason)
    assert master.master_bottleneck(_last(model="many_accepts", master_cpu=98.0)) is None


def test_gil_cap_fires() -> None:
    win = _last(
        model="worker",
        threads=True,
        workers=9,
        states=["working"],
        cpu=[11.0],
        host_cpus=2,
        host_cpu=101.0,
        gil=True,
    )
    d = gil.gil_cap(win)
    assert d is not None
    assert d.message.startswith("GIL cap: 9 threads share one core")
    assert d.message.endswith("1 core idle")


def test_gil_cap_quiet() -> None:
    kw = dict(model="worker", threads=True, workers=9, states=["working"], cpu=[11.0])
    assert gil.gil_cap(_last(**kw, host_cpus=2, host_cpu=101.0, gil=False)) is None
    assert gil.gil_cap(_last(**kw, host_cpus=2, host_cpu=199.0)) is None  # no idle core
    # processes, not threads: each may use a core of its own
    assert gil.gil_cap(_last(workers=9, states=["working"], cpu=[11.0], host_cpu=101.0)) is None
    # threads idle: nothing capped
    idle = dict(kw, states=["waiting"], cpu=[0.5])
    assert gil.gil_cap(_last(**idle, host_cpus=2, host_cpu=5.0)) is None


def test_reuseport_backlog_fires() -> None:
    win = _last(model="reuseport", workers=4, listeners=4, queue=[0, 0, 120, 0])
    d = diagnosis.reuseport_backlog(win)
    assert d is not None
    assert d.message == "one reuseport queue backed up: worker 2 queue 120, others 0"


def test_reuseport_backlog_quiet() -> None:
    assert diagnosis.reuseport_backlog(_last(workers=4, listeners=4, queue=[3, 2, 4, 1])) is None
    # all queues long together: overload, not one stalled worker
    assert (
        diagnosis.reuseport_backlog(_last(workers=4, listeners=4, queue=[90, 80, 120, 100])) is None
    )
    # a single shared queue is not reuseport
    assert diagnosis.reuseport_backlog(_last(workers=4, listeners=1, queue=[120])) is None


def test_quiet_server_has_no_diagnosis() -> None:
    assert _last(workers=4, accepts=[3, 3, 3, 3], cpu=[5.0])[-1].diagnoses == ()
    assert diagnosis.diagnose([]) == []


# -- issue 12: no banner lies ---------------------------------------------------------------


def _analysed(snaps: list[Snapshot]) -> list[Snapshot]:
    """Hand-built snapshots judged one by one, as a live session's are."""
    analyser = Analyser()
    return [analyser.annotate(s) for s in snaps]


def test_listener_threads_are_not_workers_so_event_shows_no_accept_skew() -> None:
    # event, 3 processes x 25 threads: each thread serves at most one connection; the
    # 3 listener threads accept everything and hold the parked keep-alive connections
    roles = ["worker"] * 75 + ["listener"] * 3
    win = _last(
        workers=78,
        threads=True,
        roles=roles,
        connections=[1] * 5 + [0] * 70 + [40, 30, 30],
        accepts=[0] * 75 + [3, 1, 1],
        states=["waiting"] * 75 + ["keepalive"] * 3,
    )
    assert "accept_skew" not in _rules(win)
    imb = win[-1].imbalance
    assert imb.accepts is not None and imb.accepts.n == 75 and imb.accepts.jain is None
    assert imb.connections is not None and imb.connections.n == 75
    assert len(win[-1].live_workers) == 75


def test_a_few_accepts_over_many_workers_are_not_skew() -> None:
    # proc_spawn under overload: 100 accepts in the window over 250 workers
    win = _last(workers=250, accepts=[1] * 5 + [0] * 245)
    assert win[-1].imbalance.accepts is not None and win[-1].imbalance.accepts.total == 100
    assert "accept_skew" not in _rules(win)
    # the same share with enough accepts per worker is skew
    assert "accept_skew" in _rules(_last(workers=4, accepts=[4, 0, 0, 0]))


def test_a_growing_pool_does_not_fake_skew() -> None:
    # prefork under burst: 5 children take even turns; 15 spawned 1 s before the end have
    # had no time to accept
    snaps = [
        synthetic.snapshot(seq=k, time=1000 + 0.25 * k, workers=5 if k < 16 else 20, accepts=[2])
        for k in range(20)
    ]
    last = _analysed(snaps)[-1]
    assert last.imbalance.accepts is not None and last.imbalance.accepts.n == 5
    assert last.imbalance.accepts.jain == 1.0
    assert "accept_skew" not in {d.rule for d in last.diagnoses}


def test_a_dead_worker_is_in_no_index() -> None:
    import dataclasses

    snaps = []
    for k in range(20):
        s = synthetic.snapshot(seq=k, time=1000 + 0.25 * k, workers=4, accepts=[9, 1, 1, 1])
        if k >= 15:  # worker 0 (the busiest) killed
            ws = list(s.workers)
            ws[0] = dataclasses.replace(ws[0], state="dead", connections=0, accepts=0)
            s = dataclasses.replace(s, workers=tuple(ws))
        snaps.append(s)
    last = _analysed(snaps)[-1]
    for name, imb in last.imbalance.items():
        assert imb is not None and imb.n == 3, name
        assert imb.top_worker != "worker 0", name


def test_one_worker_busy_serving_is_overflow_not_starvation() -> None:
    # single --backlog 16 under storm: the worker serves at half a core of 2 (25% of the
    # machine) with the queue full: that is overflow, the worker is not starving
    win = _last(workers=1, states=["working"], cpu=[50.0], queue=16, limit=16, overflows_delta=9)
    assert diagnosis.starvation(win) is None
    assert [d.rule for d in win[-1].diagnoses] == ["accept_queue_overflow"]
    # even when the loader leaves it little CPU: it is serving, not holding idle clients
    slow = _last(workers=1, states=["working"], cpu=[10.0], queue=16, limit=16)
    assert diagnosis.starvation(slow) is None


def test_starvation_explains_an_overflow_and_is_named_first() -> None:
    win = _last(workers=20, states=["keepalive"], cpu=[0.1], queue=16, limit=16, overflows_delta=3)
    assert [d.rule for d in win[-1].diagnoses] == ["starvation", "accept_queue_overflow"]


def test_a_diagnosis_stays_up_until_absent_for_a_few_seconds() -> None:
    starving = diagnosis.starvation(
        _last(workers=4, states=["keepalive"], cpu=[0.1], queue=9, limit=511)
    )
    assert starving is not None
    memory = diagnosis.Memory()
    assert memory.update(100.0, [starving]) == [starving]
    # one sample without the evidence (a client freed a child for an instant): still up
    [held] = memory.update(100.25, [])
    assert held.rule == "starvation" and held.message == starving.message + " (last seen 1 s ago)"
    [held] = memory.update(100.0 + diagnosis.HOLD_S - 0.1, [])
    assert held.message.endswith("(last seen 3 s ago)")
    assert memory.update(100.0 + diagnosis.HOLD_S + 0.1, []) == []
    assert memory.update(110.0, [starving]) == [starving]  # fresh again: as it is


def test_no_accept_skew_where_a_master_deals_the_connections() -> None:
    # cluster: the window cut the master's dealt bursts unevenly; round robin is even
    win = _last(workers=4, model="cluster", accepts=[16, 5, 4, 0], dispatches_delta=25)
    assert win[-1].imbalance.accepts is not None and win[-1].imbalance.accepts.jain < 0.7
    assert "accept_skew" not in _rules(win)
    # goroutines after its keep-alive clients connected: no dispatch in the window, but
    # its acceptor dealt every connection it holds (was "worker 0 holds 91% of open
    # connections" on the gil demo)
    import dataclasses

    held = _last(workers=2, model="goroutines", connections=[20, 1], dispatches_delta=0)
    assert "accept_skew" in _rules(held)  # what the rule sees without the model's total
    dealt = [
        dataclasses.replace(s, model=dataclasses.replace(s.model, dispatches=20)) for s in held
    ]
    assert diagnosis.accept_skew(dealt) is None


# -- the request phases cited (issue 16) -------------------------------------------------------


def test_starvation_cites_how_long_new_connections_wait_in_the_accept_queue() -> None:
    win = _last(
        workers=256,
        states=["keepalive"],
        cpu=[0.03],
        queue=511,
        limit=511,
        queue_ms=4200.0,
        server_ms=0.05,
        service_ms=0.3,
        phase_requests=[1],
    )
    d = diagnosis.starvation(win)
    assert d is not None
    assert d.message.startswith(
        "starvation: new connections wait 4.2 s (p99) in the accept queue while "
        "256/256 workers hold idle keep-alive connections, CPU "
    )
    assert "accept queue 511/511" in d.message


def test_starvation_by_slow_clients_names_requests_still_arriving() -> None:
    """Workers pinned reading requests that never end (slowloris: the starvation demo's
    last step) are not holding keep-alive connections; the message said they were."""
    win = _last(
        workers=20,
        states=["reading"],
        cpu=[0.0],
        queue=40,
        limit=511,
        queue_ms=600.0,
        server_ms=0.05,
        service_ms=0.3,
        phase_requests=[1],
    )
    d = diagnosis.starvation(win)
    assert d is not None
    assert "20/20 workers hold requests still arriving, CPU " in d.message
    assert "keep-alive" not in d.message


def test_starvation_without_accepts_in_the_window_says_none_got_through() -> None:
    # queue wait is timed at accept(): with every worker pinned none is, so no wait to
    # cite (none made up), and that none got through is the news (seen live: prefork 32)
    win = _last(workers=8, states=["keepalive"], queue=20, queue_ms=4200.0, phase_requests=[0])
    d = diagnosis.starvation(win)
    assert d is not None
    assert d.message.startswith(
        "starvation: no connection accepted in 5 s while 8/8 workers hold idle keep-alive "
        "connections, CPU "
    )
    # phases not measured at all: the figures it has
    d = diagnosis.starvation(_last(workers=8, states=["keepalive"], queue=20))
    assert d is not None and d.message.startswith("starvation: 8/8 workers busy, CPU ")


def test_master_bottleneck_cites_the_hand_off() -> None:
    win = _last(
        model="cluster",
        master_cpu=98.0,
        cpu=[20.0],
        dispatches_delta=50,
        queue_ms=0.1,
        server_ms=12.0,
        service_ms=0.5,
    )
    d = master.master_bottleneck(win)
    assert d is not None
    assert d.message == (
        "master bottleneck: cluster master 98% CPU, workers 20%; hand-off adds 12 ms at p99"
    )
    # named once: the in-server wait rule leaves it to master_bottleneck
    assert wait_rule.server_wait(win) is None
    assert "server_wait" not in _rules(win)


def test_in_server_wait_names_a_cluster_hand_off_with_an_idle_master() -> None:
    win = _last(
        model="cluster",
        master_cpu=40.0,
        cpu=[20.0],
        dispatches_delta=50,
        server_ms=[12.0, 3.0, 3.0, 3.0],
        service_ms=0.5,
    )
    d = wait_rule.server_wait(win)
    assert d is not None
    assert d.message.startswith(
        "in-server wait: cluster master: hand-off adds 12 ms at p99, service p99 500 µs, "
        "800 requests in 5 s, most at worker 0 (p99 12 ms)"
    )
    assert "server_wait" in _rules(win)


def test_in_server_wait_names_requests_parked_in_a_model_without_a_master() -> None:
    win = _last(model="event", server_ms=39.0, service_ms=2.0)
    d = wait_rule.server_wait(win)
    assert d is not None
    assert d.message.startswith(
        "in-server wait: requests wait 39 ms inside event before a worker starts them (p99), "
        "service p99 2.0 ms"
    )


def test_in_server_wait_quiet_when_short_served_longer_unmeasured_or_too_few() -> None:
    assert wait_rule.server_wait(_last(server_ms=2.0, service_ms=0.5)) is None  # short
    assert wait_rule.server_wait(_last(server_ms=40.0, service_ms=30.0)) is None  # served ~as long
    assert wait_rule.server_wait(_last(queue_ms=500.0)) is None  # in-server wait unmeasured
    few = _last(server_ms=40.0, service_ms=2.0, phase_requests=[1])  # 80 requests
    assert few[-1].window_phases is not None and few[-1].window_phases.server is not None
    assert few[-1].window_phases.server.count < wait_rule.WAIT_MIN_COUNT
    assert wait_rule.server_wait(few) is None


def test_overflow_and_gil_cap_cite_their_phases() -> None:
    d = diagnosis.accept_queue_overflow(
        _last(queue=511, limit=511, overflows_delta=5, queue_ms=1100.0, service_ms=1.0)
    )
    assert d is not None
    assert d.message.endswith("; accepted connections waited 1.1 s in the queue at p99")
    win = _last(
        model="worker",
        threads=True,
        workers=9,
        states=["working"],
        cpu=[11.0],
        host_cpus=2,
        host_cpu=101.0,
        gil=True,
        service_ms=[2.0, 30.0],
    )
    d = gil.gil_cap(win)
    assert d is not None
    assert d.message.endswith("1 core idle; service p50 2.0 ms, p99 30 ms")
