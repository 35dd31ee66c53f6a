"""The seed's claims, measured: each claim of the user's document run against the original
(C, Node, Go, Apache, for real) and against its Python model, with one figure each.

Each claim is a small bounded experiment (`lab.probes`) on a fresh server started through
`lab.server.open_server`, so originals and models go through the same seam and are
stopped by pid. Figures name their source: the X-Worker header counted by the client
(ground truth for the originals, whose per-worker accepts the attach sampler reads
exactly only with eBPF), the Python models' scoreboard accepts (exact, kept by the
workers themselves), connect and wait times seen by the client, CPU from
/proc/PID/task/TID/schedstat (nanoseconds, every thread of every process).

Measured on the project's 2-core machine (see "The seed's claims, measured" in docs/models.md):
the whole run takes about a minute; `--only` runs one claim.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from originals import is_original
from originals import spec as original_spec
from originals.build import BuildError
from servers.config import ConfigError, ServerConfig
from servers.supervisor import ServerError, Supervisor
from sources.sampler import Sampler
from values.snapshot import Role

from . import probes
from .server import Server, open_server, sampler_for

BURST_ROUNDS, BURST_SIZE = 10, 20  # burst balance: 10 rounds of 20 connections at once
# The Node docs' anchor as they state it: eight processes. 100 connections in one burst,
# 10 times (one burst of 100 gave top-two shares from 0.31 to 0.62 on node:many_accepts)
DOCS_WORKERS, DOCS_BURST, DOCS_ROUNDS = 8, 100, 10
SEQUENTIAL = 200  # sequential balance: 200 connections one after another
IDLE_CLIENTS, STARVE_LIMIT = 12, 3.0  # keep-alive idle clients; a new client's patience
CPU_CLIENTS, CPU_SECONDS = 8, 3.0  # CPU-heavy requests: clients, seconds measured


@dataclass(frozen=True)
class Figure:
    """One measured figure: its value (None: not measured), how it reads, where from."""

    value: float | None
    text: str
    source: str = ""


@dataclass(frozen=True)
class Claim:
    key: str  # for --only
    row: str  # the seed's row: "C single"
    says: str  # the claim, in the seed's words (shortened)
    original: str
    model: str
    knobs: dict[str, Any]  # for both
    measure: Callable[[Server], Figure]
    holds: Callable[[float], bool]  # on the original's figure
    rule: str  # what "confirmed" means, for the table's reader
    anchor: str = ""  # a published figure to hold it against


@dataclass
class ClaimResult:
    claim: Claim
    original: Figure
    model: Figure
    seconds: float = 0.0

    @property
    def confirmed(self) -> bool | None:
        v = self.original.value
        return None if v is None else self.claim.holds(v)


# -- per-worker counts: X-Worker for the originals, the scoreboard for the models ----------


def _accepts_by_pid(sampler: Sampler) -> Counter[int]:
    snap = sampler.sample()
    out: Counter[int] = Counter()
    for w in snap.workers:
        if w.role == Role.WORKER and w.accepts_total is not None:
            out[w.pid] += w.accepts_total
    return out


def worker_counts(srv: Server, action: Callable[[int], Counter[str]]) -> tuple[list[int], str]:
    """Connections per worker while `action(port)` runs, busiest first, and their source."""
    if isinstance(srv, Supervisor):
        sampler = sampler_for(srv)
        try:
            before = _accepts_by_pid(sampler)
            action(srv.port)
            after = _accepts_by_pid(sampler)
        finally:
            sampler.close()  # the /proc files it keeps open
        counts = [after[p] - before.get(p, 0) for p in after]
        return sorted(counts, reverse=True), "scoreboard accepts (exact)"
    seen = action(srv.port)
    workers = len(srv.pids()) - 1 if srv.config.workers else 0
    counts = sorted(seen.values(), reverse=True)
    counts += [0] * max(0, workers - len(counts))  # a worker never seen served none
    return counts, "X-Worker header, counted by the client"


def _share(counts: Sequence[int], top: int = 1) -> float:
    total = sum(counts)
    return sum(counts[:top]) / total if total else 0.0


# -- the experiments ---------------------------------------------------------------------


def concurrency(srv: Server) -> Figure:
    n, io_ms = 4, 200
    wall = probes.concurrent_wall(srv.port, n, f"/work?io_ms={io_ms}")
    c = n * io_ms / 1000 / wall
    return Figure(c, f"{c:.1f} ({n} x {io_ms} ms io in {wall:.2f} s)", "client wall time")


def backlog_throttle(srv: Server) -> Figure:
    times = probes.connect_times(srv.port, 16, "/work?cpu_ms=20")
    slow = sum(1 for t in times if t >= 0.9)
    return Figure(
        slow,
        f"{slow} of {len(times)} connects took >= 1 s (SYN retransmit)",
        "client connect times",
    )


def sequential_even(srv: Server) -> Figure:
    counts, source = worker_counts(srv, lambda p: probes.sequential_workers(p, SEQUENTIAL))
    text = f"{'/'.join(map(str, counts))} of {sum(counts)}"
    top = max(counts) / sum(counts) if counts and sum(counts) else None
    return Figure(top, text, source)


def burst_skew(srv: Server) -> Figure:
    """Mean top share over BURST_ROUNDS bursts (one burst says little: 20 connections)."""
    tops, top2s, source = [], [], ""
    for _ in range(BURST_ROUNDS):
        counts, source = worker_counts(srv, lambda p: probes.burst_workers(p, BURST_SIZE))
        tops.append(_share(counts))
        top2s.append(_share(counts, 2))
    top, top2 = sum(tops) / len(tops), sum(top2s) / len(top2s)
    n = srv.config.workers or 0
    text = f"top {top:.0%}, top 2 {top2:.0%} of {n} workers (even: {1 / max(n, 1):.0%})"
    return Figure(top, text, source)


def docs_top_two(srv: Server) -> Figure:
    """The Node docs' figure as stated: the share of the two busiest of 8 processes, over
    DOCS_ROUNDS bursts of DOCS_BURST connections (mean, and the range seen)."""
    top2s, source = [], ""
    for _ in range(DOCS_ROUNDS):
        counts, source = worker_counts(srv, lambda p: probes.burst_workers(p, DOCS_BURST))
        top2s.append(_share(counts, 2))
    mean = sum(top2s) / len(top2s)
    n = srv.config.workers or 0
    text = (
        f"top 2 of {n} took {mean:.0%} ({min(top2s):.0%}-{max(top2s):.0%} over "
        f"{DOCS_ROUNDS} bursts of {DOCS_BURST}; even: {2 / max(n, 1):.0%}) on "
        f"{os.cpu_count()} cores"
    )
    return Figure(mean, text, source)


def cores(srv: Server) -> Figure:
    used, others = probes.cores_used(srv.port, srv.pids, CPU_CLIENTS, CPU_SECONDS)
    text = f"{used:.2f} cores of {os.cpu_count()} (the rest of the host: {others:.2f})"
    return Figure(used, text, "/proc schedstat of its pids; host: /proc/stat")


def starvation(srv: Server) -> Figure:
    wait, served = probes.new_client_wait(srv.port, IDLE_CLIENTS, STARVE_LIMIT)
    head = f"{served}/{IDLE_CLIENTS} idle clients served; new client "
    if wait is None:
        return Figure(1.0, head + f"not answered in {STARVE_LIMIT:g} s: starved", "client wait")
    return Figure(0.0, head + f"answered in {wait * 1000:.0f} ms", "client wait")


# -- the claims ----------------------------------------------------------------------------

_POOL8 = {"start_servers": 8, "min_spare": 1, "max_spare": 8, "max_workers": 8}
_ONE_BY_8 = {"workers": 1, "threads_per_child": 8}
_NCPU = os.cpu_count() or 1  # on one core the claim cannot show

CLAIMS: tuple[Claim, ...] = (
    Claim("single-concurrency", "C single", "concurrency = 1", "c:single", "single", {},
          concurrency, lambda v: v <= 1.3, "concurrency <= 1.3"),
    Claim("single-backlog", "C single", "throttles in the backlog", "c:single", "single",
          {"backlog": 4}, backlog_throttle, lambda v: v > 0, "some connects >= 1 s"),
    Claim("proc_spawn-even", "C proc_spawn", "workers each blocking in accept() share it",
          "c:proc_spawn", "proc_spawn", {"workers": 4}, sequential_even,
          lambda v: v <= 0.30, "4 workers, 200 sequential: top share <= 30%",
          "Cloudflare 2017: blocking accept is FIFO, even"),
    Claim("proc_spawn-few", "C proc_spawn", "few workers: throttling in the backlog",
          "c:proc_spawn", "proc_spawn", {"workers": 2, "backlog": 4}, backlog_throttle,
          lambda v: v > 0, "2 workers, backlog 4, 16 at once: some connects >= 1 s"),
    Claim("cluster-balances", "Node simple_cluster.js", "the master balances (round robin)",
          "node:simple_cluster", "cluster", {"workers": 4}, burst_skew,
          lambda v: v <= 0.40, "mean top share <= 40% (even: 25%)",
          "Node docs: round robin is the default because the OS skews"),
    Claim("many_accepts-skew", "Node many_accepts.js", "OS balancing puts the load on one",
          "node:many_accepts", "many_accepts", {"workers": 4}, burst_skew,
          lambda v: v > 0.40, "mean top share > 40% (even: 25%)",
          "Node docs: >70% of connections to 2 of 8 processes; "
          "Cloudflare 2017: EPOLLEXCLUSIVE is LIFO, nearly all to one worker"),
    Claim("many_accepts-docs", "Node many_accepts.js",
          "the Node docs: over 70% of connections to 2 of 8 processes",
          "node:many_accepts", "many_accepts", {"workers": DOCS_WORKERS}, docs_top_two,
          lambda v: v > 0.70, f"8 workers, bursts of {DOCS_BURST}: mean top-two share > 70%",
          "Node cluster docs (Node 0.11.2, 2013): their machine, cores and load unstated"),
    Claim("go-cores", "Go server", "threads for each core: uses every core", "go:server",
          "goroutines", {}, cores, lambda v: v > 1.2 and _NCPU > 1,
          "CPU-heavy requests use > 1.2 cores (more than one core gives)"),
    Claim("prefork-starves", "Apache prefork", "keep-alive clients block every worker",
          "apache:prefork", "prefork", _POOL8, starvation, lambda v: v > 0,
          f"MaxRequestWorkers 8, {IDLE_CLIENTS} idle keep-alive: a new client waits > 3 s"),
    Claim("worker-starves", "Apache worker", "the same as prefork, with threads",
          "apache:worker", "worker", _ONE_BY_8, starvation, lambda v: v > 0,
          f"1 x 8 threads, {IDLE_CLIENTS} idle keep-alive: a new client waits > 3 s"),
    Claim("event-keepalive", "Apache event", "fixes keep-alive: idle clients block nothing",
          "apache:event", "event", _ONE_BY_8, starvation, lambda v: v == 0,
          f"1 x 8 threads, {IDLE_CLIENTS} idle keep-alive: a new client is answered"),
)  # fmt: skip

KEYS = tuple(c.key for c in CLAIMS)


def claims(only: Sequence[str] = ()) -> list[Claim]:
    """The claims to run; ConfigError naming the choices for an unknown key."""
    for key in only:
        if key not in KEYS:
            raise ConfigError(f"--only: unknown claim {key!r}; choose from: {', '.join(KEYS)}")
    return [c for c in CLAIMS if not only or c.key in only]


def measure_one(name: str, claim: Claim) -> Figure:
    """Start `name` with the claim's knobs, run its experiment, stop it (always)."""
    if is_original(name) and not (sp := original_spec(name)).toolchain.present:
        return Figure(None, f"not run: apt-get install {sp.toolchain.package}")
    cfg = ServerConfig(model=name, keepalive_timeout=15.0, **claim.knobs)
    try:
        srv = open_server(cfg)
        srv.start()
    except (ServerError, ConfigError, BuildError) as e:
        return Figure(None, f"could not start: {e}")
    try:
        return claim.measure(srv)
    except OSError as e:
        return Figure(None, f"failed: {e}")
    finally:
        srv.stop()


@dataclass
class SeedRun:
    results: list[ClaimResult] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # claims left out by the time bound


def run_claims(
    selected: Sequence[Claim],
    *,
    budget: float = 240.0,
    on_result: Callable[[ClaimResult], None] | None = None,
) -> SeedRun:
    """Every selected claim on its original, then its model; claims not started within
    `budget` seconds are skipped (and named), so the whole run is bounded."""
    out = SeedRun()
    t0 = time.monotonic()
    for claim in selected:
        if time.monotonic() - t0 > budget:
            out.skipped.append(claim.key)
            continue
        c0 = time.monotonic()
        res = ClaimResult(
            claim, measure_one(claim.original, claim), measure_one(claim.model, claim)
        )
        res.seconds = time.monotonic() - c0
        out.results.append(res)
        if on_result is not None:
            on_result(res)
    out.seconds = time.monotonic() - t0
    return out
