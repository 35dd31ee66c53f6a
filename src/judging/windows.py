"""A recording as windows of consecutive samples: what `verdict` judges two recordings on.

Samples of a time series are not independent draws: a worker that took the last accept
often takes the next, a burst of load fills several samples' queues. So two recordings are
compared over WINDOWS of k consecutive samples, each window's figures summed (requests,
accepts and CPU per worker, latency and phase histograms, queue depth, seconds in each
diagnosis), and k is chosen from the data: the shortest lag at which the per-sample series
(requests, accepts, queue depth, CPU) no longer correlate, their autocorrelation inside
the white-noise band 2/sqrt(n). Windows that far apart are taken as independent.

Only the samples from the first under load to the last count (without a load generator,
as when attached: from the first in which a worker accepted or served to the last).
Per-sample figures come from each snapshot's interval values (accepts, CPU %) and from
the difference of two readings of a cumulative one (the client's completed requests,
errors and latency histogram; the server's request phases). A cumulative figure that goes
backwards is a new run (the client's: the load was started again, counted from zero) or a
worker gone from the sum (the server's phases: that sample's phases are left out, not
counted as a jump).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from plumbing.loghist import NBUCKETS, LogHist, bucket_bounds
from values.snapshot import Role, Snapshot

from .resample import np  # numpy, loaded with one BLAS thread

PHASES = ("queue", "server", "service")
MIN_WINDOWS = 8  # windows per recording the block length must leave (capped below it)
MAX_WINDOWS = 120  # windows per recording above which they are made longer (computation)

# each bucket's value as a quantile reports it (LogHist.quantile_ms: the bucket's midpoint)
MID_US = np.array(
    [lo if hi - lo == 1 else (lo + hi) / 2 for lo, hi in map(bucket_bounds, range(NBUCKETS))]
)


@dataclass
class Sample:
    """One sample's interval figures (None: not measured in it)."""

    time: float
    dt: float  # seconds since the previous sample
    requests: int | None  # the client's completed requests in the interval
    errors: int | None  # the client's failed requests in the interval
    latency: LogHist | None  # latency of the requests completed in the interval
    accepts: dict[int, int]  # worker column -> accepts in the interval
    cpu_s: dict[int, float]  # worker column -> CPU seconds in the interval
    queue: int  # accept-queue length summed over the listeners
    phases: tuple[LogHist | None, ...]  # queue wait, in-server wait, service
    rules: frozenset[str]  # diagnoses carried
    loaded: bool = True  # a load generator ran or completed requests in the interval
    traffic: bool = True  # a worker accepted or served something in it
    other_cpu_s: float | None = None  # CPU seconds the rest of the machine used in it
    # (other_cpu: the host's busy time less the server's, the load generator's and the
    # sampler's); None when the host was not read
    in_flight: int | None = None  # the client's requests sent and not yet answered, at the
    # sample (LoadStats.in_flight); None without a load generator


@dataclass
class Recording:
    """A recording read for judging: its samples and what it is a recording of."""

    name: str  # how tables name it (the file name)
    samples: list[Sample] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)  # column -> label ("worker 3")
    model: str | None = None  # the model (or "attached") of its first sample
    load: str | None = None  # the client's level name, e.g. "storm (10 clients)"
    period: float | None = None  # median sample interval, seconds
    has_client: bool = False  # some sample carried the load generator's figures
    has_latency: bool = False  # ... and its latency histogram (recordings made before: not)
    has_accepts: bool = False  # some worker's accepts were counted
    has_phases: tuple[bool, ...] = (False, False, False)
    has_host: bool = False  # every sample knows the rest of the machine's CPU (other_cpu_s)
    last_latency_ms: tuple[float, float] | None = None  # the client's own p50, p99, last
    rule_messages: dict[str, str] = field(default_factory=dict)  # rule -> first message
    window_s: float = 0.0  # the longest sliding window its diagnoses were judged over
    # how its listeners dealt connections to the workers, over every sample (Spread values
    # as read; "unknown" where not read), and the model's balancing policy as started
    spreads: set[str] = field(default_factory=set)
    policy: str | None = None

    @property
    def duration_s(self) -> float:
        return sum(s.dt for s in self.samples)


def read(snapshots: Iterable[Snapshot], name: str) -> Recording:
    """Sample figures of a recording's snapshots, in order (the first without an interval
    is the baseline the others' differences start from)."""
    # one pass on purpose: each difference needs the previous sample's totals in the loop
    rec = Recording(name)
    cols: dict[tuple[int | None, int, int], int] = {}
    prev_req = prev_err = 0
    prev_gen: float | None = None  # the load generator's CPU seconds, last read
    prev_lat: LogHist | None = None
    prev_ph: list[LogHist | None] = [None, None, None]
    intervals: list[float] = []
    for snap in snapshots:
        c = snap.client
        if rec.model is None and snap.model is not None:
            rec.model = snap.model.name
            rec.policy = snap.model.policy
        rec.spreads.update(str(ln.spread or "unknown") for ln in snap.listeners)
        if c is not None and rec.load is None and c.requests:
            rec.load = f"{c.level} ({c.clients} clients)"
        requests = errors = None
        latency = None
        if c is not None:
            rec.has_client = True
            errs = c.error_count
            reset = c.requests < prev_req or errs < prev_err
            if reset:  # a new load run: its counts start from zero
                prev_req = prev_err = 0
                prev_lat = prev_gen = None
            requests, errors = c.requests - prev_req, errs - prev_err
            prev_req, prev_err = c.requests, errs
            if c.latency_hist is not None:
                rec.has_latency = True
                latency = _since(c.latency_hist, prev_lat, reset_ok=True)
                prev_lat = c.latency_hist
            if c.latency_ms.count:
                rec.last_latency_ms = (c.latency_ms.p50, c.latency_ms.p99)
        phases: list[LogHist | None] = [None, None, None]
        now = snap.phases.items() if snap.phases is not None else ()
        for i, (_, h) in enumerate(now):
            if h is not None:
                phases[i] = _since(h, prev_ph[i], reset_ok=False)
            prev_ph[i] = h
        generator = c.generator_cpu_s if c is not None else None
        gen_s, prev_gen = _generator_s(generator, prev_gen), generator
        if snap.interval_s is None:
            continue  # the baseline: differences count from it
        intervals.append(snap.interval_s)
        sample = Sample(
            time=snap.time,
            dt=snap.interval_s,
            requests=requests,
            errors=errors,
            latency=latency,
            accepts={},
            cpu_s={},
            queue=snap.queue,
            phases=tuple(phases),
            rules=frozenset(d.rule for d in snap.diagnoses),
            loaded=c is not None and (c.running or bool(requests)),
            other_cpu_s=other_cpu(snap, gen_s),
            in_flight=c.in_flight if c is not None else None,
        )
        rec.window_s = max(rec.window_s, snap.window_s)
        for d in snap.diagnoses:
            rec.rule_messages.setdefault(d.rule, d.message)
        served = False
        for w in snap.workers:
            if w.role != Role.WORKER or not w.alive:
                continue
            col = cols.get(w.key)
            if col is None:
                col = cols[w.key] = len(rec.workers)
                rec.workers.append(w.label)
            if w.accepts is not None:
                sample.accepts[col] = w.accepts
                rec.has_accepts = True
            served = served or bool(w.requests)
            if w.cpu_percent is not None:
                sample.cpu_s[col] = w.cpu_percent / 100.0 * snap.interval_s
        sample.traffic = any(sample.accepts.values()) or served
        rec.samples.append(sample)
    rec.samples = _busy_span(rec.samples, "loaded" if rec.has_client else "traffic")
    rec.has_phases = tuple(any(s.phases[i] is not None for s in rec.samples) for i in range(3))
    rec.has_host = bool(rec.samples) and all(s.other_cpu_s is not None for s in rec.samples)
    if intervals:
        rec.period = sorted(intervals)[len(intervals) // 2]
    return rec


# spreads whose worker for a connection is set by the kernel's hash of its addresses or a
# master's rotation, not by which worker is free; policies that make it depend on that again
DEALT = frozenset({"reuseport", "master"})
FREE_POLICIES = ("least-connections", "cpu")


def dealt(rec: Recording) -> bool:
    """Which worker takes a connection does not depend on which one is free: a shared
    queue's does (the first waiter woken, or the one not busy), so a busier machine moves
    its shares by itself (measured: many_accepts --exclusive, same setup, 96% then 81% of
    accepts to the top worker with others' CPU 0.4-0.7 cores apart)."""
    free = rec.policy is not None and any(p in rec.policy for p in FREE_POLICIES)
    return bool(rec.spreads) and rec.spreads <= DEALT and not free


def other_cpu(snap: Snapshot, generator_s: float) -> float | None:
    """CPU seconds the rest of the machine used over the snapshot's interval: the host's
    busy time (/proc/stat) less the server's entities' (their schedstat), the load
    generator's (its own process time, `generator_s`) and the sampler's (`cost_ms`), at
    least 0. Two runs of one setup on a machine whose other tenants woke up between them
    differ in every timing figure (measured: a same-setup pair with 0.17 then 1.34 cores used
    by others showed a service p99 2.9x longer, p = 0.002); this is how a verdict sees it."""
    if snap.host is None or snap.host.cpu_percent is None or not snap.interval_s:
        return None
    dt = snap.interval_s
    server = snap.totals()["cpu_percent"] / 100.0 * dt
    busy = snap.host.cpu_percent / 100.0 * dt
    return max(0.0, busy - server - generator_s - (snap.cost_ms or 0.0) / 1000.0)


def _generator_s(now: float | None, before: float | None) -> float:
    """The load generator's CPU seconds since its last reading (0 without one)."""
    if now is None:
        return 0.0
    return now - before if before is not None and now >= before else 0.0


def _busy_span(samples: list[Sample], what: str) -> list[Sample]:
    """From the first sample under load (`loaded`; without a load generator: the first
    with `traffic`) to the last: idle samples before a load starts (its generator takes
    ~0.5 s to begin) and after it ended would water every figure down, and not by the
    same amount in two recordings. Idle samples between stay."""
    busy = [i for i, s in enumerate(samples) if getattr(s, what)]
    return samples[busy[0] : busy[-1] + 1] if busy else samples


def _since(now: LogHist, before: LogHist | None, *, reset_ok: bool) -> LogHist | None:
    """What a cumulative histogram gained since `before`; a reading that went backwards is
    a new run (`reset_ok`: all of `now` is new) or unknown (None)."""
    if before is None:
        return now
    if now.count < before.count:
        return now if reset_ok else None
    return now.minus(before)


# -- windows ------------------------------------------------------------------------------


@dataclass
class Windows:
    """A recording's figures summed over windows of `k` samples (arrays, one row each)."""

    k: int
    duration: np.ndarray  # (W,) seconds
    samples: np.ndarray  # (W,) samples in the window
    requests: np.ndarray  # (W,) completed requests (0 where not measured)
    errors: np.ndarray  # (W,)
    latency: np.ndarray  # (W, NBUCKETS) counts
    latency_max: np.ndarray  # (W,) us, the top of the window's highest bucket
    accepts: np.ndarray  # (W, workers)
    cpu_s: np.ndarray  # (W, workers)
    queue: np.ndarray  # (W,) queue length summed over the window's samples
    other_cpu: np.ndarray  # (W,) CPU seconds the rest of the machine used (0: not read)
    phases: tuple[np.ndarray, ...]  # (W, NBUCKETS) each: queue wait, in-server, service
    phases_max: tuple[np.ndarray, ...]  # (W,) each
    rules: dict[str, np.ndarray]  # rule -> (W,) seconds it was carried
    in_flight: np.ndarray  # (W,) requests in flight summed over the window's samples

    @property
    def count(self) -> int:
        return len(self.duration)


def cut(rec: Recording, k: int, rules: Sequence[str]) -> Windows:
    """`rec` in windows of `k` samples; a last part shorter than k joins the window before."""
    n = len(rec.samples)
    count = max(1, n // k)
    bounds = [(i * k, (i + 1) * k if i < count - 1 else n) for i in range(count)]
    nw, nk = len(rec.workers), len(bounds)
    out = Windows(
        k=k,
        duration=np.zeros(nk),
        samples=np.zeros(nk),
        requests=np.zeros(nk),
        errors=np.zeros(nk),
        latency=np.zeros((nk, NBUCKETS)),
        latency_max=np.zeros(nk),
        accepts=np.zeros((nk, nw)),
        cpu_s=np.zeros((nk, nw)),
        queue=np.zeros(nk),
        other_cpu=np.zeros(nk),
        phases=tuple(np.zeros((nk, NBUCKETS)) for _ in PHASES),
        phases_max=tuple(np.zeros(nk) for _ in PHASES),
        rules={r: np.zeros(nk) for r in rules},
        in_flight=np.zeros(nk),
    )
    for j, (lo, hi) in enumerate(bounds):
        for s in rec.samples[lo:hi]:
            out.duration[j] += s.dt
            out.samples[j] += 1
            out.requests[j] += s.requests or 0
            out.errors[j] += s.errors or 0
            _add(out.latency[j], s.latency, out.latency_max, j)
            for col, a in s.accepts.items():
                out.accepts[j, col] += a
            for col, c in s.cpu_s.items():
                out.cpu_s[j, col] += c
            out.queue[j] += s.queue
            out.in_flight[j] += s.in_flight or 0
            out.other_cpu[j] += s.other_cpu_s or 0.0
            for i, h in enumerate(s.phases):
                _add(out.phases[i][j], h, out.phases_max[i], j)
            for r in s.rules:
                if r in out.rules:
                    out.rules[r][j] += s.dt
    return out


def _add(row: np.ndarray, h: LogHist | None, maxes: np.ndarray, j: int) -> None:
    if h is None or not h.count:
        return
    for i, c in h.buckets:
        row[i] += c
    maxes[j] = max(maxes[j], h.max_us)


# -- the block length -----------------------------------------------------------------------


def series(rec: Recording) -> list[list[float]]:
    """The per-sample series whose autocorrelation sets the block length."""
    return [
        [float(s.requests or 0) for s in rec.samples],
        [float(sum(s.accepts.values())) for s in rec.samples],
        [float(s.queue) for s in rec.samples],
        [sum(s.cpu_s.values()) for s in rec.samples],
    ]


def decorrelation_lag(values: Sequence[float], max_lag: int) -> int:
    """The first lag (>= 1) at which the series' autocorrelation falls inside the band
    2/sqrt(n) (white noise's, at 95%); `max_lag + 1` when it never does that soon.
    A constant series is taken as uncorrelated (1)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 4:
        return 1
    x = x - x.mean()
    var = float(np.dot(x, x))
    if var <= 1e-12 * max(1.0, float(np.abs(x).max()) ** 2):
        return 1
    band = 2.0 / math.sqrt(n)
    for lag in range(1, max_lag + 1):
        if float(np.dot(x[:-lag], x[lag:])) / var < band:
            return lag
    return max_lag + 1


@dataclass(frozen=True)
class Blocks:
    k: int  # samples per window
    wanted: int  # what the autocorrelation asked for
    capped: bool  # k < wanted: the recordings too short to leave MIN_WINDOWS windows


def block_length(recs: Sequence[Recording]) -> Blocks:
    """One window length for every recording: the longest decorrelation lag of their
    series, at most what leaves each MIN_WINDOWS windows, at least what keeps each under
    MAX_WINDOWS (when the first allows it)."""
    shortest = min(len(r.samples) for r in recs)
    longest = max(len(r.samples) for r in recs)
    cap = max(1, shortest // MIN_WINDOWS)
    wanted = max(
        (decorrelation_lag(s, max(1, shortest // 2)) for r in recs for s in series(r)),
        default=1,
    )
    k = min(wanted, cap)
    k = max(k, min(cap, -(-longest // MAX_WINDOWS)))
    return Blocks(k=k, wanted=wanted, capped=wanted > k)
