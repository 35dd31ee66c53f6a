"""Deterministic synthetic scenarios for the TUI's snapshot tests (no clocks, no servers).

Each returns a list of snapshots, analysed like live ones (imbalance and diagnoses filled
in), that reads like the real thing: the figures are the ones seen live on a 2-core box.
"""

from __future__ import annotations

from loadgen.stats import LoadStats
from telemetry import synthetic
from telemetry.snapshot import Kind, Role, Snapshot, WorkerState

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
                    w, tid=tid, kind=Kind.THREAD, role=Role.THREAD, group=0, connections=None
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
                    role=Role.THREAD,
                    accepts=None,
                    accepts_total=None,
                    requests=None,
                    requests_total=None,
                    connections=None,
                )
            )
    return dataclasses.replace(snap, source="attach", workers=tuple(rows))
