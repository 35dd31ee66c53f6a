"""Each diagnosis rule fires on a synthetic window that shows its phenomenon, and stays
quiet on one that does not."""

from __future__ import annotations

from telemetry import diagnosis, synthetic


def _last(**kw):  # type: ignore[no-untyped-def]
    return synthetic.series(kw.pop("count", 20), **kw)


def _rules(snaps) -> set[str]:  # type: ignore[no-untyped-def]
    return {d.rule for d in snaps[-1].diagnoses}


def test_accept_skew_fires() -> None:
    win = _last(workers=4, accepts=[10, 2, 1, 1])
    d = diagnosis.accept_skew(win)
    assert d is not None
    assert d.message.startswith("accept skew: worker 0 took 71% of accepts in 5 s (Jain 0.")
    assert "accept_skew" in _rules(win)


def test_accept_skew_fires_on_connections_held_after_a_burst() -> None:
    # 20 keep-alive clients connected at once; the accepts have left the window
    win = _last(workers=4, accepts=[0], connections=[10, 7, 3, 0])
    d = diagnosis.accept_skew(win)
    assert d is not None
    assert d.message.startswith("accept skew: worker 0 holds 50% of open connections (Jain 0.")


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
    d = diagnosis.master_bottleneck(win)
    assert d is not None
    assert d.message == "master bottleneck: cluster master 98% CPU, workers 20%"


def test_master_bottleneck_quiet() -> None:
    assert diagnosis.master_bottleneck(_last(model="cluster", master_cpu=30.0, cpu=[20.0])) is None
    assert diagnosis.master_bottleneck(_last(model="cluster", master_cpu=98.0, cpu=[90.0])) is None
    # no dispatching master (many_accepts master busy for another reason)
    assert diagnosis.master_bottleneck(_last(model="many_accepts", master_cpu=98.0)) is None


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
    d = diagnosis.gil_cap(win)
    assert d is not None
    assert d.message.startswith("GIL cap: 9 threads share one core")
    assert d.message.endswith("1 core idle")


def test_gil_cap_quiet() -> None:
    kw = dict(model="worker", threads=True, workers=9, states=["working"], cpu=[11.0])
    assert diagnosis.gil_cap(_last(**kw, host_cpus=2, host_cpu=101.0, gil=False)) is None
    assert diagnosis.gil_cap(_last(**kw, host_cpus=2, host_cpu=199.0)) is None  # no idle core
    # processes, not threads: each may use a core of its own
    assert (
        diagnosis.gil_cap(_last(workers=9, states=["working"], cpu=[11.0], host_cpu=101.0)) is None
    )
    # threads idle: nothing capped
    idle = dict(kw, states=["waiting"], cpu=[0.5])
    assert diagnosis.gil_cap(_last(**idle, host_cpus=2, host_cpu=5.0)) is None


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
