"""The run summary: one model under one load with no TUI, summed up over the whole run.

Measuring and drawing are kept apart: `lab.headless.run_headless` drives a `Session` and
feeds every snapshot to a `lab.aggregate.SummaryBuilder`, which turns the run into the plain
`RunSummary` here (no rich, no I/O). `text.summary.render_summary` draws it with rich;
`lab.aggregate.write_json` and `write_csv` are plain writers.

What the summary takes from where:
- client figures (throughput, latency and connect-time percentiles, errors by kind): the
  load generator's final `LoadResult`, with the full histograms;
- imbalance over the WHOLE run: per-worker totals (accepts, CPU seconds) from the
  scoreboard and /proc, each worker counted from a baseline sample taken before the load
  starts (a worker first seen later, e.g. a prefork spawn, counts from zero);
- the maximum accept-queue length over all samples (per listener, and summed);
- ListenOverflows / ListenDrops: the sum of the kernel's per-interval deltas. These
  counters are namespace-wide (every socket in the network namespace adds to them), and
  are labelled so everywhere they are shown; what the model's own listening sockets
  dropped is `own_drops` (their sk_drops, SO_MEMINFO or sock_diag), the figure that
  belongs to the model;
- the diagnoses seen: each rule once, with its first message and when it first fired;
- all of the above over the load only: what the server did after it (its drain, a queue
  emptying to whoever is free) is teardown, with its accepts and diagnoses apart;
- where the time went: the whole server's request phases over the run, the last
  snapshot's cumulative histograms minus the baseline's (queue wait per accepted
  connection, in-server wait and service time per request; plumbing.loghist buckets, so
  each quantile is within 6.25%, and the max, a difference of two readings, is the top of
  its bucket capped by the exact maximum); None when not measured (attached servers
  without eBPF), never zeros;
- the stuck workers' stacks, taken by themselves (lab.autocapture): each capture as the
  snapshots brought it, and how many stuck episodes were seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from judging.stuck import stands
from loadgen.levels import LoadLevel
from loadgen.result import LoadResult
from loadgen.stats import ERROR_KINDS, Percentiles
from plumbing.loghist import LogHist
from values.snapshot import Kind, Role
from values.stuck import StuckCapture
from values.units import rounded

# -- the summary (plain data) ---------------------------------------------------------------


@dataclass
class WorkerTotals:
    """One worker's share of the run (a respawned worker is another row)."""

    label: str  # "worker 3"
    slot: int | None
    pid: int
    tid: int
    kind: str  # "process" or "thread"
    generation: int
    accepts: int = 0
    requests: int | None = None  # None: the server counts none we read (the originals)
    cpu_s: float = 0.0
    alive_at_end: bool = True
    role: str = "worker"  # values.snapshot.Role: only workers enter the imbalance

    @property
    def folded(self) -> bool:
        """A thread row folded under its process (values.snapshot.WorkerSample.folded)."""
        return self.role == Role.HELPER and self.kind == Kind.THREAD

    def to_json_dict(self, total_accepts: int) -> dict[str, Any]:
        return {
            "worker": self.label,
            "slot": self.slot,
            "pid": self.pid,
            "tid": self.tid,
            "kind": self.kind,
            "generation": self.generation,
            "accepts": self.accepts,
            "accept_share": round(self.accepts / total_accepts, 4) if total_accepts else None,
            "requests": self.requests,
            "cpu_s": round(self.cpu_s, 3),
            "alive_at_end": self.alive_at_end,
            "role": self.role,
        }


@dataclass
class DiagnosisSeen:
    rule: str
    severity: str
    message: str  # the first message seen
    first_s: float  # seconds into the run when it first fired
    samples: int = 1  # snapshots that carried it

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "first_s": round(self.first_s, 2),
            "samples": self.samples,
            "message": self.message,
        }


@dataclass
class RunSummary:
    model: str
    model_detail: str  # e.g. "many_accepts (workers=4)"
    level: LoadLevel
    duration_s: float = 0.0  # wall time the load ran
    samples: int = 0
    result: LoadResult | None = None  # the load generator's final result
    workers: list[WorkerTotals] = field(default_factory=list)
    accept_jain: float | None = None
    accept_top_share: float | None = None
    accept_max_over_mean: float | None = None
    accept_top_worker: str | None = None
    accept_n: int = 0  # workers the accept imbalance is over (Jain is 1 for one worker)
    cpu_jain: float | None = None
    cpu_top_share: float | None = None
    max_queue: int = 0  # summed over listeners, max over samples
    max_queue_listener: int = 0  # the longest single listener queue seen
    queue_limit: int = 0
    full_samples: int = 0  # samples in which some listener was full
    overflows: int = 0  # TcpExt ListenOverflows delta over the run (namespace-wide)
    drops: int = 0  # TcpExt ListenDrops delta (namespace-wide)
    own_drops: int | None = None  # handshakes the model's own listeners dropped (None: unread)
    master_cpu_max: float | None = None  # % of one core
    master_cpu_mean: float | None = None
    host_cpu_mean: float | None = None  # % of one core (max 100 x cores)
    cpu_count: int | None = None
    spawns: int = 0
    deaths: int = 0
    diagnoses: list[DiagnosisSeen] = field(default_factory=list)
    server_died: bool = False
    server_error: str | None = None
    load_error: str | None = None
    interrupted: bool = False
    queue_wait: LogHist | None = None  # the run's phases (None: not measured)
    server_wait: LogHist | None = None
    service: LogHist | None = None
    series: list[dict[str, Any]] = field(default_factory=list)  # one row per sample (CSV)
    # after the load's time was up (seconds into the run; None: no sample after it)
    teardown_from_s: float | None = None
    teardown_to_s: float | None = None
    teardown_accepts: int = 0  # accepts in the samples after the load (not in the figures)
    teardown_diagnoses: list[DiagnosisSeen] = field(default_factory=list)
    stuck: list[StuckCapture] = field(default_factory=list)  # the stuck workers' stacks
    # taken by themselves (lab.autocapture), in the order they came back
    stuck_episodes: int = 0  # stuck episodes seen (captured or not: budgeted)
    # the faults done to the server during the run, each "<action> <who> at <s> s"
    faults: list[str] = field(default_factory=list)

    # -- convenience ----------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return not self.server_died and self.load_error is None and self.result is not None

    @property
    def rps(self) -> float:
        return self.result.rps if self.result else 0.0

    @property
    def latency(self) -> Percentiles:
        return self.result.latency.percentiles() if self.result else Percentiles()

    @property
    def latency_all(self) -> Percentiles:
        """Completed requests plus those still waiting when the run was cut, at their age."""
        r = self.result
        return r.latency_all.percentiles() if r and r.latency_all else Percentiles()

    @property
    def connect(self) -> Percentiles:
        return self.result.connect.percentiles() if self.result else Percentiles()

    @property
    def errors(self) -> dict[str, int]:
        s = self.result.stats if self.result else None
        return {k: (s.errors.get(k, 0) if s else 0) for k in ERROR_KINDS}

    @property
    def serving(self) -> list[WorkerTotals]:
        """The rows that are workers (not a master, helper, listener or thread row)."""
        return [w for w in self.workers if w.role == "worker"]

    @property
    def total_accepts(self) -> int:
        return sum(w.accepts for w in self.workers)

    def accept_shares(self) -> list[tuple[str, float]]:
        """(worker label, share of the run's accepts), in slot order."""
        total = self.total_accepts
        return [(w.label, w.accepts / total if total else 0.0) for w in self.workers]

    def rules_seen(self) -> list[str]:
        return [d.rule for d in self.diagnoses]

    def to_json_dict(self) -> dict[str, Any]:
        # one function on purpose: the JSON's fields in the order they are written
        def pct(p: Percentiles, mean: float) -> dict[str, float]:
            return {
                "p50": p.p50,
                "p90": p.p90,
                "p99": p.p99,
                "p999": p.p999,
                "max": p.max,
                "mean": round(mean, 3),
                "count": p.count,
            }

        r = self.result
        total = self.total_accepts
        return {
            "model": self.model,
            "model_detail": self.model_detail,
            "level": self.level.name,
            "level_detail": self.level.describe(),
            "duration_s": round(self.duration_s, 3),
            "requests": r.requests if r else 0,
            # sent = requests + errors + in_flight; in_flight: still unanswered at the end
            "sent": r.stats.sent if r else 0,
            "in_flight": r.stats.in_flight if r else 0,
            "oldest_wait_ms": rounded(r.stats.oldest_wait_ms if r else None, 1),
            "rps": round(self.rps, 2),
            "latency_ms": pct(self.latency, r.latency.mean_ms if r else 0.0),
            "latency_incl_waiting_ms": pct(self.latency_all, r.latency_all.mean_ms)
            if r is not None and r.latency_all is not None
            else None,
            "connect_ms": pct(self.connect, r.connect.mean_ms if r else 0.0),
            # the client's side of each request (loadgen ClientPhases) and its own warning
            "client_phases_ms": r.to_json_dict()["phases_ms"] if r else None,
            "generator_bottleneck": (r.stats.bottleneck or None) if r else None,
            "errors": self.errors,
            "accept_jain": rounded(self.accept_jain),
            "accept_top_share": rounded(self.accept_top_share),
            "accept_max_over_mean": rounded(self.accept_max_over_mean),
            "accept_top_worker": self.accept_top_worker,
            "accept_workers": self.accept_n,
            "cpu_jain": rounded(self.cpu_jain),
            "cpu_top_share": rounded(self.cpu_top_share),
            "max_queue": self.max_queue,
            "max_queue_listener": self.max_queue_listener,
            "queue_limit": self.queue_limit,
            "full_samples": self.full_samples,
            "overflows": self.overflows,
            "listen_drops": self.drops,
            "overflows_scope": "namespace (TcpExt counters count every socket, not only ours)",
            # the model's own listening sockets (their sk_drops), None when not read
            "own_listen_drops": self.own_drops,
            "master_cpu_max": rounded(self.master_cpu_max, 1),
            "master_cpu_mean": rounded(self.master_cpu_mean, 1),
            "host_cpu_mean": rounded(self.host_cpu_mean, 1),
            "cpu_count": self.cpu_count,
            "spawns": self.spawns,
            "deaths": self.deaths,
            "diagnoses": [d.to_json_dict() for d in self.diagnoses],
            "workers": [w.to_json_dict(total) for w in self.workers],
            "server_died": self.server_died,
            "server_error": self.server_error,
            "load_error": self.load_error,
            "interrupted": self.interrupted,
            "samples": self.samples,
            "load": r.to_json_dict() if r else None,
            "queue_wait_ms": phase_json(self.queue_wait),
            "server_wait_ms": phase_json(self.server_wait),
            "service_ms": phase_json(self.service),
            # the figures above cover the load; after it, apart (None: no sample after it)
            "teardown": self.teardown_json(),
            "stuck_episodes": self.stuck_episodes,
            "stuck": [stuck_json(c) for c in self.stuck],
            "faults": self.faults,
        }

    def teardown_json(self) -> dict[str, Any] | None:
        if self.teardown_from_s is None:
            return None
        return {
            "from_s": round(self.teardown_from_s, 2),
            "to_s": round(self.teardown_to_s or self.teardown_from_s, 2),
            "accepts": self.teardown_accepts,
            "diagnoses": [d.to_json_dict() for d in self.teardown_diagnoses],
        }

    def phases(self) -> tuple[tuple[str, LogHist | None], ...]:
        """(what it is called on screen, the run's histogram) for the three phases."""
        return (
            ("queue wait", self.queue_wait),
            ("in-server wait", self.server_wait),
            ("service", self.service),
        )


def stuck_json(c: StuckCapture) -> dict[str, Any]:
    """A stuck episode and its stack: who, in what, for how long when captured, where."""
    e = c.episode
    return {
        "worker": e.worker,
        "pid": e.pid,
        "tid": e.tid,
        "slot": e.slot,
        "what": e.what,
        "state": e.state,
        "stuck_s": round(c.time - e.since, 3),  # when captured; a lower bound if not exact
        "since_exact": e.exact,
        "request": e.request,
        "client": e.client,
        "blocked": e.blocked,
        "where": stands(c),
        "stack": c.stack.to_json(),
    }


def phase_json(h: LogHist | None) -> dict[str, Any] | None:
    """{p50, p90, p99, max, count} in ms for JSON; None when the phase was not measured
    (quantiles None when measured but empty)."""
    if h is None:
        return None
    return {
        "p50": rounded(h.quantile_ms(0.5), 3),
        "p90": rounded(h.quantile_ms(0.9), 3),
        "p99": rounded(h.quantile_ms(0.99), 3),
        "max": rounded(h.max_ms, 3),
        "count": h.count,
    }
