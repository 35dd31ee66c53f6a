"""Deterministic synthetic scenarios for the TUI's snapshot tests (no clocks, no servers).

Each returns a list of snapshots, analysed like live ones (imbalance and diagnoses filled
in), that reads like the real thing: the figures are the ones seen live on a 2-core box.
"""

from __future__ import annotations

import synthetic
from judging.analyser import Analyser
from loadgen.stats import LoadStats
from values.snapshot import Kind, Role, Snapshot, WorkerState

STEPS = 40  # 10 s at 4 Hz: a full 5 s window and some sparkline history


def many_accepts_burst() -> list[Snapshot]:
    """many_accepts (4 workers) under burst: one worker takes most accepts (skew)."""
    client = synthetic.load_stats(rps=20_700, clients=20, latency_p99=3.1, connect_p99=0.4)
    return synthetic.series(
        STEPS,
        model="many_accepts",
        workers=4,
        states=["keepalive", "keepalive", "keepalive", "waiting"],
        accepts=[26, 1, 2, 0],
        connections=[13, 1, 2, 0],
        cpu=[53, 4, 5, 0],
        client=_waiting(_named(client, "burst"), 20, 3.0),
        spread="shared",
        wake="epoll",  # as read from many_accepts' workers: asyncio registers plain EPOLLIN
    )


def prefork_keepalive_idle() -> list[Snapshot]:
    """prefork at MaxRequestWorkers 256 under keepalive-idle (300 clients): every child
    pinned by an idle keep-alive connection, the CPU idle, 44 connections queued."""
    client = synthetic.load_stats(
        rps=128, clients=300, latency_p99=4_800.0, connect_p99=1.2, requests=1_280
    )
    return synthetic.series(
        STEPS,
        model="prefork",
        workers=256,
        states=["keepalive"] * 7 + ["reading"],
        accepts=[0],
        connections=[1],
        cpu=[0.2],
        requests=[0, 0, 0, 1],
        queue=44,
        client=_waiting(_named(client, "keepalive-idle"), 46, 7_200.0),
        spread="shared",
        wake="blocking",
    )


def event_keepalive_idle() -> list[Snapshot]:
    """event (3 processes x 25 threads) under keepalive-idle: the idle keep-alive
    connections wait in each listener's event loop, threads stay free, no queue."""
    client = synthetic.load_stats(
        rps=150, clients=300, latency_p99=1.4, connect_p99=0.3, requests=1_500
    )
    # 75 worker threads (each serves one connection at most, a request at a time), then
    # the 3 listener threads (role listener): they accept and hold the parked connections
    states = (["waiting"] * 23 + ["working", "waiting", "waiting", "reading"]) * 3
    snaps = synthetic.series(
        STEPS,
        model="event",
        workers=78,
        threads=True,
        states=states[:75] + ["keepalive"] * 3,
        roles=["worker"] * 75 + ["listener"] * 3,
        accepts=[0] * 75 + [2, 1, 1],
        connections=[0, 0, 1, 0, 0] * 15 + [96, 97, 95],
        cpu=[1.0, 0.5, 0.0] * 25 + [3.0, 2.5, 2.0],
        requests=[1, 0, 1, 0],
        queue=0,
        client=_waiting(_named(client, "keepalive-idle"), 3, 1.1),
    )
    return [_listeners_in_their_children(snap, 25) for snap in snaps]


def _listeners_in_their_children(snap: Snapshot, threads: int) -> Snapshot:
    """Each listener thread lives in its child process, as event's do (synthetic puts
    every 25 threads in one process, so the listeners would share a fourth)."""
    import dataclasses

    listeners = [w for w in snap.workers if w.role == "listener"]
    moved = {
        w.key: dataclasses.replace(w, pid=snap.workers[i * threads].pid, group=i)
        for i, w in enumerate(listeners)
    }
    ws = tuple(moved.get(w.key, w) for w in snap.workers)
    return dataclasses.replace(snap, workers=ws)


def _named(stats: LoadStats, level: str) -> LoadStats:
    import dataclasses

    return dataclasses.replace(stats, level=level)


def _waiting(stats: LoadStats, in_flight: int, oldest_ms: float) -> LoadStats:
    """Requests in flight and the oldest's age; the distribution with the waiting has them
    at up to that age (prefork: the 44 queued clients have waited since the ramp, ~7 s)."""
    import dataclasses

    lat = stats.latency_ms
    everyone = dataclasses.replace(
        lat,
        p99=max(lat.p99, oldest_ms * 0.97),
        p999=max(lat.p999, oldest_ms),
        max=max(lat.max, oldest_ms),
        count=lat.count + in_flight,
    )
    return dataclasses.replace(
        stats, in_flight=in_flight, oldest_wait_ms=oldest_ms, latency_all_ms=everyone
    )


def _attached(snap: Snapshot, server: str, method: str = "estimate") -> Snapshot:
    """A synthetic snapshot as attach makes it: no scoreboard slots, the server's kind and
    the accepts method named, reuseport listeners owned by their worker's pid."""
    import dataclasses

    ws = tuple(dataclasses.replace(w, slot=None, generation=0) for w in snap.workers)
    model = snap.model
    if model is not None:
        model = dataclasses.replace(model, server=server, accepts_method=method)
    procs = [w for w in ws if not w.is_thread]
    lns = tuple(
        dataclasses.replace(ln, owners=(procs[ln.index].pid,))
        if len(snap.listeners) > 1 and ln.index < len(procs)
        else ln
        for ln in snap.listeners
    )
    return dataclasses.replace(snap, workers=ws, model=model, listeners=lns)


def attached_unknown() -> Snapshot:
    """8 attached workers whose states could not be read, no load."""
    snap = synthetic.snapshot(model="attach", workers=8, states=["unknown"])
    return _attached(snap, "python")


def attached_threads() -> Snapshot:
    """A gthread-like server: 2 processes, each with 3 thread rows folded under it."""
    import dataclasses

    snap = _attached(synthetic.snapshot(model="attach", workers=2, states=["waiting"]), "gunicorn")
    rows = []
    for w in snap.workers:
        rows.append(w)
        for k in range(3):
            tid = w.pid * 10 + k
            rows.append(
                dataclasses.replace(
                    w, tid=tid, kind=Kind.THREAD, role=Role.HELPER, group=0, connections=None
                )
            )
    return dataclasses.replace(snap, workers=tuple(rows))


def attached_nginx_reuseport_stopped() -> list[Snapshot]:
    """nginx, 4 workers with reuseport, one SIGSTOPped: its queue grows, no load of ours."""
    snaps = synthetic.series(
        STEPS,
        model="attach",
        workers=4,
        states=["waiting", "stopped", "keepalive", "waiting"],
        accepts=[5, 0, 6, 4],
        connections=[2, 0, 3, 1],
        cpu=[3, 0, 4, 2],
        listeners=4,
        queue=[0, 37, 0, 0],
        requests=[5, 0, 6, 4],
        spread="reuseport",
        wake="epoll",
    )
    return [_attached(s, "nginx", "exact (eBPF)") for s in snaps]


def prefork_starving_phases() -> list[Snapshot]:
    """prefork (256 children) starved by keepalive-idle, with the request phases measured:
    the few connections that get accepted waited ~4.2 s in the accept queue (p99 ~7 s,
    when a child's keep-alive timeout freed it), then were served in ~0.3 ms."""
    client = synthetic.load_stats(
        rps=128, clients=300, latency_p99=4_800.0, connect_p99=1.2, requests=1_280
    )
    return synthetic.series(
        STEPS,
        model="prefork",
        workers=256,
        states=["keepalive"] * 7 + ["reading"],
        accepts=[0],
        connections=[1],
        cpu=[0.2],
        requests=[0, 0, 0, 1],
        queue=44,
        client=_waiting(_named(client, "keepalive-idle"), 46, 7_200.0),
        spread="shared",
        wake="blocking",
        queue_ms=[4200.0] * 4 + [7000.0],  # 1 in 5 of the accepted waited 7 s
        server_ms=[0.04, 0.05],
        service_ms=[0.3, 0.25, 0.4],
        phase_requests=[1, 0, 0, 0],
    )


def original_apache_worker(seq: int = 1, time: float = 1000.0) -> Snapshot:
    """apache:worker run as an original, as the lab samples it from outside: the master
    (waiting), 4 child processes of unknown state, 27 thread rows under each; nobody's
    requests counted (Apache's are in mod_status, not read), accepts estimated."""
    import dataclasses

    base = synthetic.snapshot(
        seq=seq,
        time=time,
        model="attached",
        workers=4,
        states=["unknown"],
        accepts=[30, 50, 20, 12],
        accepts_total=[30 * seq, 50 * seq, 20 * seq, 12 * seq],
        cpu=[40, 60, 30, 20],
    )
    snap = _attached(base, "apache-threaded")
    master = dataclasses.replace(
        snap.workers[0],
        pid=1000,
        tid=1000,
        state=WorkerState.WAITING,
        role=Role.MASTER,
        accepts=0,
        accepts_total=0,
        connections=0,
    )
    rows = [master]
    for w in snap.workers:
        rows.append(dataclasses.replace(w, requests=None, requests_total=None))
        for k in range(27):
            rows.append(
                dataclasses.replace(
                    w,
                    tid=w.pid * 100 + k,
                    kind=Kind.THREAD,
                    role=Role.HELPER,
                    accepts=None,
                    accepts_total=None,
                    requests=None,
                    requests_total=None,
                    connections=None,
                )
            )
    return dataclasses.replace(snap, source="attach", workers=tuple(rows))


# -- each demo step, as its evidence reads live (tests/test_tui_evidence.py) ----------------


def _client(level: str, **figures: object) -> LoadStats:
    """A load's live stats named `level`; `figures`: load_stats' and LoadStats' fields."""
    import dataclasses

    own = {k: figures.pop(k) for k in list(figures) if k not in _LOAD_STATS_ARGS}
    stats = synthetic.load_stats(**figures)  # type: ignore[arg-type]
    return dataclasses.replace(stats, level=level, **own)  # type: ignore[arg-type]


_LOAD_STATS_ARGS = ("rps", "requests", "clients", "errors", "latency_p99", "connect_p99")


def demo_skew_many_accepts() -> list[Snapshot]:
    """many_accepts, 4 workers, EPOLLEXCLUSIVE, 300 new connections a second: worker 0
    takes 96% of them, the others idle at '_'."""
    client = _client("light-close", rps=300, clients=10, latency_p99=1.8, connect_p99=0.3)
    return synthetic.series(
        STEPS,
        model="many_accepts",
        workers=4,
        states=["waiting"],
        accepts=[72, 1, 2, 0],
        connections=[1, 0, 0, 0],
        cpu=[31, 1, 2, 0],
        client=_waiting(client, 1, 0.9),
    )


def demo_skew_cluster() -> list[Snapshot]:
    """cluster, 4 workers, the same load: the master deals round robin, Jain 1.00."""
    client = _client("light-close", rps=300, clients=10, latency_p99=2.2, connect_p99=0.3)
    return synthetic.series(
        STEPS,
        model="cluster",
        workers=4,
        states=["waiting"],
        accepts=[19, 19, 19, 18],
        connections=[0, 1, 0, 0],
        cpu=[8, 8, 7, 8],
        master_cpu=14.0,
        dispatches_delta=75,
        client=_waiting(client, 1, 1.1),
    )


def demo_starvation_prefork() -> list[Snapshot]:
    """prefork at MaxRequestWorkers 20 under keepalive-idle (100 clients): every child in
    K, the CPU idle, 44 connections queued ~7 s, the waiting clients' latency climbing."""
    client = _client("keepalive-idle", rps=24, clients=100, latency_p99=4_800.0, connect_p99=1.2)
    return synthetic.series(
        STEPS,
        model="prefork",
        workers=20,
        states=["keepalive"] * 9 + ["reading"],
        accepts=[0],
        connections=[1],
        cpu=[0.2],
        requests=[0, 0, 0, 1],
        queue=44,
        client=_waiting(client, 46, 7_200.0),
        queue_ms=[4200.0] * 4 + [7000.0],
        server_ms=[0.04, 0.05],
        service_ms=[0.3, 0.25, 0.4],
        phase_requests=[1, 0, 0, 0],
    )


def demo_starvation_event() -> list[Snapshot]:
    """event under the same load: the threads idle at '_', the queue empty."""
    return event_keepalive_idle()


def demo_starvation_slowloris() -> list[Snapshot]:
    """prefork at 20 children under 60 slow clients (a byte a second): every child in R,
    the CPU idle, 40 connections queued; the request-read timeout frees a child now and
    then, so a few accepts get through."""
    client = _client("custom", rps=1, clients=60, latency_p99=5_100.0, connect_p99=0.3)
    return synthetic.series(
        STEPS,
        model="prefork",
        workers=20,
        states=["reading"],
        accepts=[0, 0, 0, 1],
        connections=[1],
        cpu=[0.1],
        queue=40,
        client=_waiting(client, 40, 5_200.0),
        queue_ms=[4_800.0] * 4 + [5_100.0],
        server_ms=[0.04],
        service_ms=[0.3],
        phase_requests=[1, 0, 0, 0],
    )


def demo_overflow_single() -> list[Snapshot]:
    """single with a 16-slot backlog under a storm of 20 ms requests: the queue full at
    16/16, 80 ListenOverflows a second, connects clustered at 1 s, 2 s, 3 s."""
    client = _client(
        "storm-cpu",
        rps=49,
        clients=100,
        latency_p99=3_100.0,
        connect_p99=2_040.0,
        connect_seconds=(120, 45, 12),
    )
    return synthetic.series(
        STEPS,
        model="single",
        workers=1,
        states=["working"],
        accepts=[12],
        connections=[1],
        cpu=[97],
        queue=16,
        limit=16,
        overflows_delta=20,
        drops_delta=20,
        client=_waiting(client, 100, 3_400.0),
        queue_ms=[310.0],
        service_ms=[20.0],
    )


def demo_hol_reuseport() -> list[Snapshot]:
    """reuseport, 4 workers, worker 0 paused: its own queue at 120, the others empty,
    its clients waiting (the screen draws worker 0 paused: the session's SIGSTOP)."""
    client = _client("steady-close", rps=150, clients=300, latency_p99=2_900.0, connect_p99=0.4)
    return synthetic.series(
        STEPS,
        model="reuseport",
        workers=4,
        listeners=4,
        states=["waiting"],
        accepts=[0, 17, 17, 16],
        connections=[3, 0, 1, 0],
        cpu=[0, 6, 6, 5],
        queue=[120, 0, 0, 0],
        client=_waiting(client, 123, 2_900.0),
    )


def demo_hol_many_accepts() -> list[Snapshot]:
    """many_accepts, worker 0 paused: one shared queue, the others drain it."""
    client = _client("steady-close", rps=199, clients=300, latency_p99=2.4, connect_p99=0.4)
    return synthetic.series(
        STEPS,
        model="many_accepts",
        workers=4,
        states=["waiting"],
        accepts=[0, 17, 17, 16],
        connections=[3, 0, 1, 0],
        cpu=[0, 6, 6, 5],
        queue=0,
        client=_waiting(client, 3, 2_100.0),
    )


def demo_master_storm() -> list[Snapshot]:
    """cluster under a storm: the master at 45% of a core dealing 1,200 connections a
    second, its workers at ~20% each."""
    client = _client("storm", rps=1_200, clients=100, latency_p99=12.0, connect_p99=0.5)
    return synthetic.series(
        STEPS,
        model="cluster",
        workers=4,
        states=["working", "waiting", "working", "waiting"],
        accepts=[75],
        connections=[1],
        cpu=[20, 21, 19, 20],
        master_cpu=45.0,
        dispatches_delta=300,
        client=_waiting(client, 100, 11.0),
    )


def demo_master_saturated() -> list[Snapshot]:
    """cluster with its master burning a core: the workers idle at '_', 100 connections
    queued, connects and latency past a second."""
    client = _client("storm", rps=90, clients=100, latency_p99=1_250.0, connect_p99=1_030.0)
    return synthetic.series(
        STEPS,
        model="cluster",
        workers=4,
        states=["waiting"],
        accepts=[6, 6, 5, 6],
        connections=[0],
        cpu=[2, 1, 2, 1],
        master_cpu=99.0,
        dispatches_delta=23,
        queue=100,
        client=_waiting(client, 100, 1_400.0),
    )


def demo_gil_goroutines() -> list[Snapshot]:
    """goroutines, 2 event-loop threads in one process under 5 ms requests: 52% + 47%,
    one core's worth, the other core idle."""
    client = _client("cpu-heavy", rps=190, clients=20, latency_p99=160.0, connect_p99=0.4)
    return synthetic.series(
        STEPS,
        model="goroutines",
        workers=2,
        threads=True,
        states=["working"],
        accepts=[0],
        connections=[10],
        cpu=[52, 47],
        requests=[24, 23],
        client=_waiting(client, 20, 150.0),
    )


def attached_with_long_figures() -> list[Snapshot]:
    """An attached server with the figures that got cut: a 5-digit port and pids (the
    owner beside the port, the imbalance's top worker), eBPF's queue method, the client's
    phases in milliseconds."""
    import dataclasses

    from loadgen.stats import ClientPhases, Percentiles

    def p(ms: float) -> Percentiles:
        return Percentiles(p50=ms / 2, p90=ms, p99=ms, p999=ms, max=ms, count=900)

    phases = ClientPhases(wait=p(12.5), connect=p(1.25), ttfb=p(350.2), read=p(0.4), resume=p(0.3))
    client = _client("burst", rps=2_400, clients=20, latency_p99=364.0, connect_p99=1.25)
    client = dataclasses.replace(client, phases=phases)
    snaps = synthetic.series(
        STEPS,
        model="attached",
        workers=4,
        states=["unknown"],
        accepts=[30, 2, 1, 1],
        connections=[12, 3, 2, 3],
        cpu=[60, 5, 4, 6],
        port=18200,
        root_pid=28200,
        client=client,
        queue_ms=[2.5],
        worker_phases=False,
        analyse=False,
    )
    analyser = Analyser()  # after the workers lost their slots: labelled by pid
    out = []
    for s in snaps:
        s = _attached(s, "nginx", "exact (eBPF)")
        assert s.model is not None
        model = dataclasses.replace(
            s.model, queue_method="eBPF tracepoints (first bytes' arrival -> accept)"
        )
        out.append(analyser.annotate(dataclasses.replace(s, model=model, source="attach")))
    return out


def _remedy(accepts: list[int], cpu: list[float], model: str = "many_accepts") -> list[Snapshot]:
    """The remedy demo's steps under burst: 20 keep-alive clients, their connections held
    where they were accepted, each worker's CPU following its connections."""
    client = _client("burst", rps=9_000, clients=20, latency_p99=3.0, connect_p99=0.3)
    return synthetic.series(
        STEPS,
        model=model,
        workers=4,
        states=["keepalive"],
        accepts=accepts,
        connections=accepts,
        cpu=cpu,
        client=client,
    )


def demo_remedy_all() -> list[Snapshot]:
    """many_accepts, plain epoll, accept policy all: one worker took all 20."""
    return _remedy([20, 0, 0, 0], [95, 0, 0, 0])


def demo_remedy_less_busy() -> list[Snapshot]:
    """less-busy: 10/6/4/0, as seen live."""
    return _remedy([10, 6, 4, 0], [48, 29, 19, 0])


def demo_remedy_reuseport() -> list[Snapshot]:
    """reuseport: the hash, 5 each."""
    return _remedy([5, 5, 5, 5], [24, 24, 24, 24], model="reuseport")
