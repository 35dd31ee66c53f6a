"""Synthetic snapshots for tests (TUI, diagnosis, recording) without any server.

    snap = synthetic.snapshot(workers=8, accepts=[71, 5, 5, 5, 4, 4, 3, 3], queue=12)
    series = synthetic.series(20, period=0.25, workers=4, accepts=[10, 0, 0, 0])
    series = synthetic.series(20, queue_ms=[4200, 10], server_ms=0.2, service_ms=2.0)

Request phases (issue 16): give `queue_ms`, `server_ms`, `service_ms` (one value per
worker, cycled; None leaves that phase unmeasured, as attach does) and each worker's
cumulative phases hold `phase_n` requests (per worker, cycled; default: its requests
total) at exactly that value; the snapshot's are their sum. A series grows `phase_n` by
`phase_requests` per interval (default 10 per worker) so that its windows are not empty.
With none of the three given, phases are None (not measured).

Every argument has a quiet default (an idle 4-worker many_accepts); per-worker lists are
cycled to the worker count. A series' imbalance and diagnoses are filled in by the same
analyser that annotates live samples (judging.analyser) unless `analyse=False`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from judging.analyser import Analyser
from loadgen.stats import LoadStats, Percentiles
from plumbing.loghist import NBUCKETS as NBUCKETS_
from plumbing.loghist import LogHist, index_of, merge
from values.current import Current, Peers
from values.phases import Phases
from values.server_info import HostSample, KernelCounters, ModelInfo
from values.snapshot import Kind, ListenerSample, Role, Snapshot, WorkerSample, WorkerState
from values.spread import Spread, Wake

T = TypeVar("T")


def _pick(values: Sequence[T] | None, i: int, default: T) -> T:
    if values is None or len(values) == 0:
        return default
    return values[i % len(values)]


def snapshot(
    *,
    seq: int = 1,
    time: float = 1000.0,
    interval_s: float | None = 0.25,
    model: str = "many_accepts",
    workers: int = 4,
    threads: bool = False,
    states: Sequence[str] | None = None,
    roles: Sequence[str] | None = None,
    cpu: Sequence[float] | None = None,
    connections: Sequence[int] | None = None,
    accepts: Sequence[int] | None = None,
    accepts_total: Sequence[int] | None = None,
    requests: Sequence[int] | None = None,
    rss_bytes: int = 30 << 20,
    queue: int | Sequence[int] = 0,
    limit: int = 511,
    listeners: int = 1,
    syn_recv: int = 0,
    port: int = 8080,
    overflows_delta: int | None = 0,
    drops_delta: int | None = 0,
    master_cpu: float | None = 1.0,
    host_cpus: int = 2,
    host_cpu: float | None = None,
    gil: bool | None = True,
    dispatches_delta: int | None = None,
    client: LoadStats | None = None,
    root_pid: int = 1000,
    source: str = "synthetic",
    queue_ms: float | Sequence[float] | None = None,
    server_ms: float | Sequence[float] | None = None,
    service_ms: float | Sequence[float] | None = None,
    phase_n: Sequence[int] | None = None,
    worker_phases: bool = True,
    spread: str | None = None,  # the accept mechanism read (snapshot.Spread, Wake values)
    wake: str | None = None,
    current: Sequence[Current | None] | None = None,  # per worker (values.current)
    peers: Sequence[Peers | None] | None = None,
) -> Snapshot:
    """One synthetic Snapshot; imbalance/diagnoses empty (see `series` for analysed ones)."""
    # long on purpose: one flat keyword per figure (a test names only those its
    # phenomenon needs), then one block each for workers, listeners and the rest
    ws = []
    for i in range(workers):
        if threads:
            pid, tid, group = root_pid + 1 + i // 25, root_pid + 100 + i, i // 25
        else:
            pid, tid, group = root_pid + 1 + i, root_pid + 1 + i, -1
        acc = _pick(accepts, i, 0)
        n = _pick(phase_n, i, _pick(requests, i, acc))
        ws.append(
            WorkerSample(
                slot=i,
                pid=pid,
                tid=tid,
                generation=1,
                kind=Kind.THREAD if threads else Kind.PROCESS,
                state=WorkerState(_pick(states, i, "waiting")),
                group=group,
                listener=i if listeners > 1 else 0,
                state_age_s=1.0,
                age_s=60.0,
                cpu_percent=None if interval_s is None else float(_pick(cpu, i, 0.0)),
                cpu_seconds=1.0,
                rss_bytes=rss_bytes,
                connections=_pick(connections, i, 0),
                accepts=None if interval_s is None else acc,
                accepts_total=_pick(accepts_total, i, acc),
                requests=None if interval_s is None else _pick(requests, i, acc),
                requests_total=_pick(requests, i, acc),
                bytes_sent_total=0,
                role=Role(_pick(roles, i, "worker")),
                phases=_phases(i, n, queue_ms, server_ms, service_ms),
                current=_pick(current, i, None),
                peers=_pick(peers, i, None),
            )
        )
    overall = _overall([w.phases for w in ws])
    if not worker_phases:  # measured for the whole server only (attach with eBPF)
        ws = [dataclasses.replace(w, phases=None) for w in ws]
    qs = [queue] * listeners if isinstance(queue, int) else list(queue)
    lns = tuple(
        ListenerSample(
            index=i,
            port=port,
            address="127.0.0.1",
            queue=qs[i % len(qs)],
            limit=limit,
            syn_recv=syn_recv,
            spread=Spread(spread) if spread else None,
            wake=Wake(wake) if wake else None,
            waiters=(1 if listeners > 1 or spread == "master" else workers) if spread else None,
        )
        for i in range(listeners)
    )
    iv = interval_s or 0.0
    kernel = KernelCounters(
        listen_overflows=1000,
        listen_drops=1000,
        overflows_delta=overflows_delta,
        drops_delta=drops_delta,
        overflows_per_s=(overflows_delta / iv) if overflows_delta is not None and iv else None,
        drops_per_s=(drops_delta / iv) if drops_delta is not None and iv else None,
    )
    if host_cpu is None and interval_s is not None:
        host_cpu = sum(w.cpu_percent or 0.0 for w in ws) + (master_cpu or 0.0)
    nproc = len({w.pid for w in ws}) + 1
    info = ModelInfo(
        name=model,
        root_pid=root_pid,
        master_cpu_percent=master_cpu,
        master_rss_bytes=rss_bytes,
        gil=gil,
        ready=True,
        expected=workers,
        spawns=nproc - 1,
        deaths=0,
        dispatches=0,
        dispatches_delta=dispatches_delta,
        processes=nproc,
        threads=workers + 1 if threads else nproc,
    )
    return Snapshot(
        seq=seq,
        time=time,
        wall_time=1.7e9 + time,
        interval_s=interval_s,
        source=source,
        model=info,
        workers=tuple(ws),
        listeners=lns,
        kernel=kernel,
        host=HostSample(cpu_count=host_cpus, cpu_percent=host_cpu),
        client=client,
        phases=overall,
    )


def _values(v: float | Sequence[float] | None) -> Sequence[float] | None:
    if v is None:
        return None
    return [float(v)] if isinstance(v, int | float) else v


def hist(value_ms: float, n: int) -> LogHist:
    """A LogHist of `n` values of `value_ms` each (empty when n is 0)."""
    if n <= 0:
        return LogHist()
    us = round(value_ms * 1000)
    return LogHist(n, us * n, us, ((index_of(us), n),))


def _phases(
    i: int,
    n: int,
    queue_ms: float | Sequence[float] | None,
    server_ms: float | Sequence[float] | None,
    service_ms: float | Sequence[float] | None,
) -> Phases | None:
    if queue_ms is None and server_ms is None and service_ms is None:
        return None
    out = []
    for v in (queue_ms, server_ms, service_ms):
        vals = _values(v)
        out.append(None if not vals else hist(vals[i % len(vals)], n))
    return Phases(*out)


def _overall(per_worker: Sequence[Phases | None]) -> Phases | None:
    ps = [p for p in per_worker if p is not None]
    if not ps:
        return None

    def total(name: str) -> LogHist | None:
        hs = [getattr(p, name) for p in ps]
        return None if any(h is None for h in hs) else merge(hs)

    return Phases(total("queue"), total("server"), total("service"))


def series(count: int, *, period: float = 0.25, analyse: bool = True, **kw: Any) -> list[Snapshot]:
    """`count` snapshots `period` apart with the same figures each interval.

    With `analyse`, each carries the imbalance and diagnoses over the window up to it,
    from one `Analyser` as a live session's.
    """
    analyser = Analyser() if analyse else None
    out: list[Snapshot] = []
    start = kw.pop("time", 1000.0)
    accepts = kw.get("accepts")
    per_interval = kw.pop("phase_requests", [10])
    for k in range(count):
        if accepts is not None:
            kw["accepts_total"] = [a * (k + 1) for a in accepts]
        kw["phase_n"] = [r * (k + 1) for r in per_interval]
        s = snapshot(seq=k, time=start + k * period, interval_s=period, **kw)
        out.append(analyser.annotate(s) if analyser is not None else s)
    return out


def load_stats(
    *,
    rps: float = 1000.0,
    requests: int = 10_000,
    clients: int = 50,
    errors: dict[str, int] | None = None,
    latency_p99: float = 5.0,
    connect_p99: float = 0.5,
    time: float = 1000.0,
) -> LoadStats:
    """A plausible LoadStats for tests."""
    return LoadStats(
        time=time,
        elapsed=10.0,
        level="custom",
        clients=clients,
        target_rate=None,
        running=True,
        paused=False,
        requests=requests,
        status={200: requests},
        errors=dict(errors or {}),
        in_flight=clients,
        open_connections=clients,
        latency_ms=Percentiles(
            p50=latency_p99 / 5,
            p90=latency_p99 / 2,
            p99=latency_p99,
            p999=latency_p99 * 2,
            max=latency_p99 * 3,
            count=requests,
        ),
        connect_ms=Percentiles(
            p50=connect_p99 / 5,
            p90=connect_p99 / 2,
            p99=connect_p99,
            p999=connect_p99 * 2,
            max=connect_p99 * 3,
            count=clients,
        ),
        rps=rps,
        rps_series=(rps,) * 10,
    )


def noisy(
    count: int = 40,
    *,
    seed: int = 0,
    period: float = 0.25,
    workers: int = 4,
    weights: Sequence[float] | None = None,
    accepts_per_s: float = 400.0,
    rps: float = 1000.0,
    latency_ms: float = 5.0,
    spread: float = 0.5,
    queue: float = 0.0,
    rules: Sequence[tuple[str, float]] = (),
    model: str = "many_accepts",
    other_cores: float = 0.0,
    mechanism: str | None = None,
) -> list[Snapshot]:
    """A recording's worth of snapshots with noise, as a run of one setup gives them: each
    interval's accepts drawn over the workers by `weights` (default even), requests and
    queue depth Poisson, every request's latency and service time lognormal (median
    `latency_ms`, sigma `spread`), carried cumulatively as a real load generator and
    scoreboard carry them; each (rule, chance) in `rules` is on in a sample with that
    chance; the rest of the machine uses `other_cores` (give or take 0.1) besides the
    workers; `mechanism` is the listener's spread as read (None: not read).
    The first snapshot is the baseline (no interval). Two calls with different
    seeds are two recordings of the same setup; `seed` makes one reproducible."""
    import numpy as np  # (late: the rest of this module does not need it)

    from values.findings import Diagnosis, Severity

    rng = np.random.default_rng(seed)
    w = np.asarray(weights if weights is not None else [1.0] * workers, dtype=float)
    w = w / w.sum()
    lat, svc = _Cumulative(), _Cumulative()
    total_req = 0
    totals = [0] * workers
    out: list[Snapshot] = []
    for k in range(count + 1):
        acc = rng.multinomial(rng.poisson(accepts_per_s * period), w) if k else [0] * workers
        totals = [t + int(a) for t, a in zip(totals, acc, strict=True)]
        n = int(rng.poisson(rps * period)) if k else 0
        total_req += n
        us = rng.lognormal(np.log(latency_ms * 1000), spread, n).astype(int).tolist()
        lat.add(us)
        svc.add([v // 4 for v in us])
        latency, service = lat.hist(), svc.hist()
        shares = [a / max(1, sum(acc)) for a in acc]
        cpu = [80.0 * x + float(rng.normal(0, 1)) ** 2 for x in shares]
        other = max(0.0, 100.0 * other_cores + float(rng.normal(0, 10)))
        s = snapshot(
            seq=k,
            time=1000.0 + k * period,
            interval_s=period if k else None,
            model=model,
            workers=workers,
            accepts=[int(a) for a in acc],
            accepts_total=totals,
            cpu=cpu,
            host_cpu=sum(cpu) + other if k else None,
            queue=int(rng.poisson(queue)) if queue else 0,
            spread=mechanism,
            client=dataclasses.replace(
                load_stats(rps=rps, requests=total_req, time=1000.0 + k * period),
                latency_ms=Percentiles(
                    p50=latency.quantile_ms(0.5) or 0.0,
                    p99=latency.quantile_ms(0.99) or 0.0,
                    count=latency.count,
                ),
                latency_hist=latency,
                status={200: total_req},
            ),
        )
        on = [r for r, chance in rules if k and rng.random() < chance]
        out.append(
            dataclasses.replace(
                s,
                phases=Phases(None, None, service),
                diagnoses=tuple(Diagnosis(r, Severity.WARNING, f"{r}: synthetic") for r in on),
            )
        )
    return out


class _Cumulative:
    """A cumulative histogram of microsecond values (noisy's latency and service)."""

    def __init__(self) -> None:
        self.dense = [0] * NBUCKETS_
        self.sum_us = self.max_us = 0

    def add(self, values: Sequence[int]) -> None:
        for v in values:
            self.dense[index_of(v)] += 1
        self.sum_us += sum(values)
        self.max_us = max(self.max_us, *values) if values else self.max_us

    def hist(self) -> LogHist:
        return LogHist.from_counts(self.dense, self.sum_us, self.max_us)
