"""Headless runs: one model under one load with no TUI, summed up over the whole run.

Measuring and drawing are kept apart: `run_headless` drives a `Session` and feeds every
snapshot to a `SummaryBuilder`, which turns the run into a plain `RunSummary` (no rich,
no I/O). `render_summary` draws that summary with rich (reusing the `load` command's
latency table for the client side); `write_json` and `write_csv` are plain writers.

What the summary takes from where:
- client figures (throughput, latency and connect-time percentiles, errors by kind): the
  load generator's final `LoadResult`, with the full histograms;
- imbalance over the WHOLE run: per-worker totals (accepts, CPU seconds) from the
  scoreboard and /proc, each worker counted from a baseline sample taken before the load
  starts (a worker first seen later, e.g. a prefork spawn, counts from zero);
- the maximum accept-queue length over all samples (per listener, and summed);
- ListenOverflows / ListenDrops: the sum of the kernel's per-interval deltas. These
  counters are namespace-wide (every socket in the network namespace adds to them), and
  are labelled so everywhere they are shown;
- the diagnoses seen: each rule once, with its first message and when it first fired.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from export import cli as export_cli
from loadgen import cli as loadgen_cli
from loadgen.levels import LoadLevel
from loadgen.result import LoadResult
from loadgen.stats import ERROR_KINDS, Percentiles
from servers.config import ServerConfig
from telemetry import analysis
from telemetry.snapshot import Snapshot, WorkerSample

from lab.session import Session

DRAIN_GRACE_S = 10.0  # the run loop gives up this long after the load's own duration

# exit statuses of `run` and `compare`
EXIT_OK = 0
EXIT_FAILED = 1  # the server died, or the load could not run
EXIT_START = 2  # start-up failed (busy port, bad knob, model crashed at start)


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
    requests: int = 0
    cpu_s: float = 0.0
    alive_at_end: bool = True
    role: str = "worker"  # telemetry.snapshot.Role: only workers enter the imbalance

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
    cpu_jain: float | None = None
    cpu_top_share: float | None = None
    max_queue: int = 0  # summed over listeners, max over samples
    max_queue_listener: int = 0  # the longest single listener queue seen
    queue_limit: int = 0
    full_samples: int = 0  # samples in which some listener was full
    overflows: int = 0  # TcpExt ListenOverflows delta over the run (namespace-wide)
    drops: int = 0  # TcpExt ListenDrops delta (namespace-wide)
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
    series: list[dict[str, Any]] = field(default_factory=list)  # one row per sample (CSV)

    # -- convenience ----------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return not self.server_died and self.load_error is None and self.result is not None

    @property
    def exit_status(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

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
    def total_accepts(self) -> int:
        return sum(w.accepts for w in self.workers)

    def accept_shares(self) -> list[tuple[str, float]]:
        """(worker label, share of the run's accepts), in slot order."""
        total = self.total_accepts
        return [(w.label, w.accepts / total if total else 0.0) for w in self.workers]

    def rules_seen(self) -> list[str]:
        return [d.rule for d in self.diagnoses]

    def to_json_dict(self) -> dict[str, Any]:
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
            "oldest_wait_ms": _round(r.stats.oldest_wait_ms if r else None, 1),
            "rps": round(self.rps, 2),
            "latency_ms": pct(self.latency, r.latency.mean_ms if r else 0.0),
            "latency_incl_waiting_ms": pct(self.latency_all, r.latency_all.mean_ms)
            if r is not None and r.latency_all is not None
            else None,
            "connect_ms": pct(self.connect, r.connect.mean_ms if r else 0.0),
            "errors": self.errors,
            "accept_jain": _round(self.accept_jain),
            "accept_top_share": _round(self.accept_top_share),
            "accept_max_over_mean": _round(self.accept_max_over_mean),
            "accept_top_worker": self.accept_top_worker,
            "cpu_jain": _round(self.cpu_jain),
            "cpu_top_share": _round(self.cpu_top_share),
            "max_queue": self.max_queue,
            "max_queue_listener": self.max_queue_listener,
            "queue_limit": self.queue_limit,
            "full_samples": self.full_samples,
            "overflows": self.overflows,
            "listen_drops": self.drops,
            "overflows_scope": "namespace (TcpExt counters count every socket, not only ours)",
            "master_cpu_max": _round(self.master_cpu_max, 1),
            "master_cpu_mean": _round(self.master_cpu_mean, 1),
            "host_cpu_mean": _round(self.host_cpu_mean, 1),
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
        }


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


# -- aggregation over snapshots ---------------------------------------------------------------

CSV_FIELDS = (
    "t_s",
    "rps",
    "requests",
    "errors",
    "latency_p50_ms",
    "latency_p99_ms",
    "connect_p99_ms",
    "open_connections",
    "in_flight",
    "oldest_wait_ms",
    "latency_all_p99_ms",
    "queue",
    "queue_limit",
    "overflows_delta",
    "drops_delta",
    "accept_jain",
    "accept_top_share",
    "cpu_jain",
    "master_cpu",
    "host_cpu",
    "workers_live",
    "diagnoses",
)


def _wkey(w: WorkerSample) -> tuple[int | None, int, int]:
    return w.key


class SummaryBuilder:
    """Feed it every snapshot of a run (`add`), then `finish` with the load's result.

    The first snapshot added is the baseline (take it before the load starts)."""

    def __init__(self, model: str, model_detail: str, level: LoadLevel) -> None:
        self.summary = RunSummary(model=model, model_detail=model_detail, level=level)
        self._t0: float | None = None
        self._base: dict[tuple, tuple[int, int, float]] = {}  # key -> accepts, requests, cpu
        self._rows: dict[tuple, WorkerTotals] = {}
        self._master: list[float] = []
        self._host: list[float] = []
        self._first_model: tuple[int, int] | None = None
        self._baseline_done = False

    def start_clock(self, t0: float) -> None:
        """Seconds in the summary (diagnoses' first_s, CSV t_s) count from `t0`."""
        self._t0 = t0

    def add(self, snap: Snapshot) -> None:
        s = self.summary
        if not self._baseline_done:
            self._baseline_done = True
            for w in snap.workers:
                if w.state not in ("empty", "dead"):
                    self._base[_wkey(w)] = (
                        w.accepts_total or 0,
                        w.requests_total or 0,
                        w.cpu_seconds or 0.0,
                    )
            if snap.model is not None:
                self._first_model = (snap.model.spawns or 0, snap.model.deaths or 0)
            s.cpu_count = snap.host.cpu_count if snap.host else None
            if self._t0 is None:
                self._t0 = snap.time
            return
        s.samples += 1
        t = snap.time - (self._t0 if self._t0 is not None else snap.time)
        for w in snap.workers:
            if w.state == "empty":
                continue
            key = _wkey(w)
            row = self._rows.get(key)
            if row is None:
                if w.state == "dead":
                    continue  # died before we ever saw it alive: nothing to count
                row = self._rows[key] = WorkerTotals(
                    label=w.label if w.is_worker else f"{w.label} ({w.role})",
                    slot=w.slot,
                    pid=w.pid,
                    tid=w.tid,
                    kind=w.kind,
                    generation=w.generation,
                    role=str(w.role),
                )
            a0, r0, c0 = self._base.get(key, (0, 0, 0.0))
            if w.accepts_total is not None:
                row.accepts = max(row.accepts, w.accepts_total - a0)
            if w.requests_total is not None:
                row.requests = max(row.requests, w.requests_total - r0)
            if w.cpu_seconds is not None:
                row.cpu_s = max(row.cpu_s, w.cpu_seconds - c0)
            row.alive_at_end = w.state != "dead"
        s.max_queue = max(s.max_queue, snap.queue)
        s.queue_limit = max(s.queue_limit, snap.queue_limit)
        for ln in snap.listeners:
            s.max_queue_listener = max(s.max_queue_listener, ln.queue)
        if any(ln.full for ln in snap.listeners):
            s.full_samples += 1
        if snap.kernel is not None:
            s.overflows += snap.kernel.overflows_delta or 0
            s.drops += snap.kernel.drops_delta or 0
        m = snap.model
        if m is not None:
            if m.master_cpu_percent is not None:
                self._master.append(m.master_cpu_percent)
            if self._first_model is not None:
                s.spawns = max(0, (m.spawns or 0) - self._first_model[0])
                s.deaths = max(0, (m.deaths or 0) - self._first_model[1])
        if snap.host is not None and snap.host.cpu_percent is not None:
            self._host.append(snap.host.cpu_percent)
        for d in snap.diagnoses:
            seen = next((x for x in s.diagnoses if x.rule == d.rule), None)
            if seen is None:
                s.diagnoses.append(DiagnosisSeen(d.rule, d.severity, d.message, t))
            else:
                seen.samples += 1
        s.series.append(_series_row(snap, t))

    def finish(
        self,
        result: LoadResult | None,
        *,
        duration_s: float,
        server_died: bool = False,
        server_error: str | None = None,
        load_error: str | None = None,
        interrupted: bool = False,
    ) -> RunSummary:
        s = self.summary
        s.result = result
        if result is not None:
            s.level = result.level
        s.duration_s = result.elapsed if result is not None else duration_s
        s.server_died = server_died
        s.server_error = server_error
        s.load_error = load_error
        s.interrupted = interrupted
        s.workers = sorted(
            self._rows.values(), key=lambda w: (w.slot if w.slot is not None else 1 << 30, w.tid)
        )
        span = s.duration_s
        serving = [w for w in s.workers if w.role == "worker"]  # not event's listeners
        acc = analysis.measure(
            "accepts",
            {(w.slot, w.tid, w.generation): (w.label, w.accepts) for w in serving},
            span,
        )
        cpu = analysis.measure(
            "cpu", {(w.slot, w.tid, w.generation): (w.label, w.cpu_s) for w in serving}, span
        )
        s.accept_jain, s.accept_top_share = acc.jain, acc.top_share
        s.accept_max_over_mean, s.accept_top_worker = acc.max_over_mean, acc.top_worker
        s.cpu_jain, s.cpu_top_share = cpu.jain, cpu.top_share
        if self._master:
            s.master_cpu_max = max(self._master)
            s.master_cpu_mean = sum(self._master) / len(self._master)
        if self._host:
            s.host_cpu_mean = sum(self._host) / len(self._host)
        return s


def _series_row(snap: Snapshot, t: float) -> dict[str, Any]:
    c = snap.client
    a, cpu = snap.imbalance.accepts, snap.imbalance.cpu
    k = snap.kernel
    return {
        "t_s": round(t, 3),
        "rps": c.rps if c else None,
        "requests": c.requests if c else None,
        "errors": c.error_count if c else None,
        "latency_p50_ms": c.latency_ms.p50 if c else None,
        "latency_p99_ms": c.latency_ms.p99 if c else None,
        "connect_p99_ms": c.connect_ms.p99 if c else None,
        "open_connections": c.open_connections if c else None,
        "in_flight": c.in_flight if c else None,
        "oldest_wait_ms": _round(c.oldest_wait_ms, 1) if c else None,
        "latency_all_p99_ms": c.latency_all_ms.p99 if c and c.latency_all_ms.count else None,
        "queue": snap.queue,
        "queue_limit": snap.queue_limit,
        "overflows_delta": k.overflows_delta if k else None,
        "drops_delta": k.drops_delta if k else None,
        "accept_jain": _round(a.jain) if a else None,
        "accept_top_share": _round(a.top_share) if a else None,
        "cpu_jain": _round(cpu.jain) if cpu else None,
        "master_cpu": _round(snap.model.master_cpu_percent, 1) if snap.model else None,
        "host_cpu": _round(snap.host.cpu_percent, 1) if snap.host else None,
        "workers_live": len(snap.live_workers),
        "diagnoses": ";".join(d.rule for d in snap.diagnoses),
    }


# -- running ---------------------------------------------------------------------------------

SampleCallback = Callable[[Snapshot, float], None]


def run_headless(
    config: ServerConfig,
    level: LoadLevel,
    *,
    period: float = 0.25,
    record: str | None = None,
    on_sample: SampleCallback | None = None,
    stop: threading.Event | None = None,
    session_factory: Callable[..., Session] = Session,
    observers: Sequence[Callable[[Snapshot], None]] = (),
) -> RunSummary:
    """Start `config`, take a baseline sample, run `level` to its end, sum the run up.

    Start-up failures raise (ServerError/BindError, ConfigError, LoadError) with nothing
    left running; a server that dies mid-run, or a load that fails, ends the run early
    and is reported in the summary (`summary.ok` is False). `stop` ends it early too
    (Ctrl-C), with `interrupted` set."""
    level = level.check()
    stop = stop or threading.Event()
    session = session_factory(config, None, period=period, record=record)
    if observers:
        session.observers.extend(observers)
    try:
        session.start()  # the server only: the baseline comes before any load
        builder = SummaryBuilder(config.model, session.describe_model(), level)
        base = session.sample()
        if base is not None:
            builder.add(base)
        session.set_level(level)  # starts the load (LoadError propagates from here)
        t0 = time.monotonic()
        builder.start_clock(t0)
        died = False
        server_error = None
        while True:
            if stop.wait(period):
                break
            snap = session.sample()
            elapsed = time.monotonic() - t0
            if snap is not None:
                builder.add(snap)
                if on_sample is not None:
                    on_sample(snap, elapsed)
            sup = session.supervisor
            if sup is None or not sup.running:
                died = True
                code = sup.proc.returncode if sup is not None and sup.proc else None
                server_error = f"{config.model} exited during the run (code {code})"
                break
            runner = session.runner
            if runner is None or not runner.running:
                break
            if elapsed > level.duration + DRAIN_GRACE_S:
                break
        runner = session.runner
        result = session.submit(runner.stop).result() if runner is not None else None
        if not died and session.supervisor is not None:
            if session.supervisor.running:
                last = session.sample()  # the final totals, after the load's drain
                if last is not None:
                    builder.add(last)
            else:
                died = True
                server_error = f"{config.model} exited during the run"
        load_error = None
        if runner is None:
            load_error = "the load did not start"
        elif result is None:
            load_error = runner.error or "the load generator gave no result"
        elif result.error:
            load_error = result.error
        return builder.finish(
            result,
            duration_s=time.monotonic() - t0,
            server_died=died,
            server_error=server_error,
            load_error=load_error,
            interrupted=stop.is_set(),
        )
    finally:
        session.close()


# -- writers (plain) -------------------------------------------------------------------------


def write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_csv(path: str, summary: RunSummary) -> None:
    """One row per sample: the run as a time series (the JSON holds the totals)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_FIELDS))
        w.writeheader()
        for row in summary.series:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})


# -- drawing (rich) --------------------------------------------------------------------------


def _fmt(x: float | None, spec: str = "{:.2f}") -> str:
    return "-" if x is None else spec.format(x)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def render_summary(console: Console, s: RunSummary, *, max_workers: int = 16) -> None:
    console.print(Text(f"{s.model_detail} under {s.level.name}", style="bold"))
    if s.result is not None:
        loadgen_cli.summary(console, s.result)  # the `load` command's latency table
    t = Table(title="server", title_justify="left", box=None, padding=(0, 1), show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row(
        "accept imbalance",
        f"Jain {_fmt(s.accept_jain)}  top share {_pct(s.accept_top_share)}"
        f" ({s.accept_top_worker or '-'})  max/mean {_fmt(s.accept_max_over_mean, '{:.1f}')}"
        f"  over {s.total_accepts} accepts, whole run",
    )
    t.add_row("CPU imbalance", f"Jain {_fmt(s.cpu_jain)}  top share {_pct(s.cpu_top_share)}")
    q = f"{s.max_queue}" + (f" / limit {s.queue_limit}" if s.queue_limit else "")
    if s.max_queue_listener != s.max_queue:
        q += f"  (longest single queue {s.max_queue_listener})"
    if s.full_samples:
        q += f"  full in {s.full_samples} samples"
    t.add_row("max accept queue", Text(q, style="bold red" if s.full_samples else ""))
    t.add_row(
        "ListenOverflows",
        Text(
            f"{s.overflows}  (ListenDrops {s.drops}; namespace-wide counters)",
            style="bold red" if s.overflows else "",
        ),
    )
    if s.master_cpu_max is not None:
        t.add_row(
            "master CPU",
            f"mean {s.master_cpu_mean:.0f}%  max {s.master_cpu_max:.0f}% of one core",
        )
    if s.host_cpu_mean is not None:
        cores = f" of {s.cpu_count * 100}%" if s.cpu_count else ""
        t.add_row("host CPU", f"mean {s.host_cpu_mean:.0f}%{cores}")
    if s.spawns or s.deaths:
        t.add_row("workers", f"{s.spawns} spawned, {s.deaths} died during the run")
    console.print(t)
    if s.workers:
        console.print(_worker_table(s, max_workers))
    if s.diagnoses:
        console.print(Text("diagnoses seen", style="bold"))
        for d in s.diagnoses:
            style = "bold red" if d.severity == "critical" else "yellow"
            console.print(
                Text(f"  {d.first_s:5.1f}s  ", style="dim")
                + Text(d.message, style=style)
                + Text(f"  ({d.samples} samples)", style="dim")
            )
    else:
        console.print("diagnoses seen: none")
    if s.server_died:
        console.print(Text(f"server died: {s.server_error}", style="bold red"))
    if s.load_error:
        console.print(Text(f"load failed: {s.load_error}", style="bold red"))
    if s.interrupted:
        console.print(Text("interrupted: the run was cut short", style="yellow"))


def _worker_table(s: RunSummary, max_rows: int) -> Table:
    t = Table(title="per worker, whole run", title_justify="left")
    for col in ("worker", "pid", "accepts", "share", "requests", "CPU s"):
        t.add_column(col, justify="left" if col == "worker" else "right")
    total = s.total_accepts
    rows = sorted(s.workers, key=lambda w: -w.accepts)[:max_rows]
    for w in sorted(rows, key=lambda w: (w.slot if w.slot is not None else 1 << 30, w.tid)):
        share = w.accepts / total if total else 0.0
        bar = "█" * round(share * 20)
        t.add_row(
            w.label + ("" if w.alive_at_end else " (gone)"),
            str(w.pid if w.kind == "process" else f"{w.pid}/{w.tid}"),
            str(w.accepts),
            f"{100 * share:3.0f}% {bar}",
            str(w.requests),
            f"{w.cpu_s:.2f}",
        )
    if len(s.workers) > max_rows:
        t.caption = f"the {max_rows} busiest of {len(s.workers)} workers"
    return t


# -- the `run` command -----------------------------------------------------------------------

ModelArgs = Callable[[argparse.ArgumentParser], None]
ConfigFromArgs = Callable[[str, argparse.Namespace], ServerConfig]


def add_parser(subparsers: Any, add_model_args: ModelArgs) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run",
        help="run one model under one load without the TUI, then print a summary",
        description="Start a model, run a preset load against it with a progress bar, and "
        "print a summary: throughput, latency and connect-time percentiles, errors, accept "
        "and CPU imbalance over the whole run, the longest accept queue, ListenOverflows "
        "(namespace-wide) and the diagnoses seen. Exit status 1 if the server died or the "
        "load failed, 2 if it could not start.",
    )
    p.add_argument("--model", required=True, help="model name (see `serverscope serve --list`)")
    add_load_args(p)
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON to FILE")
    p.add_argument("--csv", metavar="FILE", help="write the run as a time series to FILE")
    p.add_argument("--record", metavar="FILE", help="record every snapshot to FILE (JSON Lines)")
    export_cli.add_args(p)
    add_model_args(p)
    return p


def add_load_args(p: argparse.ArgumentParser) -> None:
    from loadgen.levels import PRESETS

    p.add_argument(
        "--load", default="burst", choices=list(PRESETS), help="load preset (default burst)"
    )
    p.add_argument("--duration", type=_duration, help="seconds of load (default: the preset's own)")
    p.add_argument("--period", type=_duration, default=0.25, help="seconds between samples (0.25)")


def _duration(text: str) -> float:
    """Seconds, more than 0 and at most a day (every run ends by itself)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    if value > 24 * 3600:
        raise argparse.ArgumentTypeError(f"must be at most 86400 seconds (a day), got {text}")
    return value


def level_from_args(a: argparse.Namespace) -> LoadLevel:
    from loadgen.levels import preset

    level = preset(a.load)
    if a.duration is not None:
        level = level.with_(duration=a.duration)
    return level.check()


def console_for_output() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=140)  # files: rows unwrapped


def progress_run(
    console: Console,
    config: ServerConfig,
    level: LoadLevel,
    *,
    title: str,
    period: float = 0.25,
    record: str | None = None,
    stop: threading.Event | None = None,
    observers: Sequence[Callable[[Snapshot], None]] = (),
) -> RunSummary:
    """`run_headless` with a rich progress bar (transient) showing the live figures."""
    with loadgen_cli.live_progress(console) as progress:
        task = progress.add_task(title, total=level.duration, live="starting")

        def show(snap: Snapshot, elapsed: float) -> None:
            live = loadgen_cli.live_figures(snap.client) if snap.client else ""
            live += f"  queue {snap.queue}"
            if snap.diagnoses:
                live += "  [yellow]" + ", ".join(d.rule for d in snap.diagnoses) + "[/]"
            progress.update(task, completed=min(elapsed, level.duration), live=live)

        return run_headless(
            config,
            level,
            period=period,
            record=record,
            on_sample=show,
            stop=stop,
            observers=observers,
        )


def install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C / SIGTERM end the run in order (the summary still prints)."""
    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    return old


def restore_handlers(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


def command(a: argparse.Namespace, config_from_args: ConfigFromArgs) -> int:
    """`serverscope run`. Start-up errors (ConfigError, ServerError) propagate to the CLI's
    main, which prints them in one line with exit status 2; a LoadError does the same here."""
    from loadgen.levels import LoadError

    try:
        level = level_from_args(a)
    except LoadError as e:
        print(f"serverscope run: {e}", file=sys.stderr)
        return EXIT_START
    try:
        for option in ("json", "csv", "record"):
            loadgen_cli.check_output(f"--{option}", getattr(a, option))
    except OSError as e:
        print(f"serverscope run: {e}", file=sys.stderr)
        return EXIT_START
    config = config_from_args(a.model, a)
    try:
        exporter = export_cli.from_args(a, "serverscope run")
    except export_cli.ExportError as e:
        print(f"serverscope run: {e}", file=sys.stderr)
        return EXIT_START
    console = console_for_output()
    stop = threading.Event()
    old = install_stop_handlers(stop)
    try:
        summary = progress_run(
            console,
            config,
            level,
            title=f"{config.model} / {level.name}",
            period=a.period,
            record=a.record,
            stop=stop,
            observers=[exporter.update] if exporter else (),
        )
    except LoadError as e:
        print(f"serverscope run: {e}", file=sys.stderr)
        return EXIT_START
    finally:
        restore_handlers(old)
        if exporter is not None:
            exporter.close()
    render_summary(console, summary)
    try:
        if a.json:
            write_json(a.json, summary.to_json_dict())
        if a.csv:
            write_csv(a.csv, summary)
    except OSError as e:
        print(f"serverscope run: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_FAILED
    return summary.exit_status
