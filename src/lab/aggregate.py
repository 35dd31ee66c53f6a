"""Summing a run up: `SummaryBuilder` turns every snapshot of a run into a `RunSummary`
(per-worker totals from a baseline, maxima, namespace-wide counter deltas, diagnoses seen),
and one CSV row per sample; `write_json` / `write_csv` write them (plain files, no rich).

The run's figures cover its load: a sample taken once the load's time was up (its drain,
the queue emptying to whoever is free after it) is teardown, summed apart and labelled so
(prefork after keepalive-idle read "accept skew: worker 28 took 51%" 2 s after the load,
and the whole-run Jain counted those accepts).
"""

from __future__ import annotations

import csv
import json
from typing import Any

from judging import analysis
from loadgen.levels import LoadLevel
from loadgen.result import LoadResult
from values.snapshot import Snapshot, WorkerState
from values.units import rounded

from .summary import DiagnosisSeen, RunSummary, WorkerTotals

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
    "queue_wait_p99_ms",
    "server_wait_p99_ms",
    "service_p99_ms",
    "phase",
)


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
        self._first: Snapshot | None = None  # the baseline, and the latest: the run's phases
        self._last: Snapshot | None = None
        self._drops0: dict[tuple[int, int, int], int | None] = {}  # listener -> its drops

    def start_clock(self, t0: float) -> None:
        """Seconds in the summary (diagnoses' first_s, CSV t_s) count from `t0`."""
        self._t0 = t0

    def add(self, snap: Snapshot) -> None:
        if not self._baseline_done:
            self._baseline(snap)
            return
        s = self.summary
        s.samples += 1
        s.stuck.extend(snap.stuck)  # during the load or after it: a capture is a capture
        t = snap.time - (self._t0 if self._t0 is not None else snap.time)
        if self._after_load(snap):
            self._teardown(snap, t)
            return
        self._add_workers(snap)
        s.max_queue = max(s.max_queue, snap.queue)
        s.queue_limit = max(s.queue_limit, snap.queue_limit)
        for ln in snap.listeners:
            s.max_queue_listener = max(s.max_queue_listener, ln.queue)
        if any(ln.full for ln in snap.listeners):
            s.full_samples += 1
        if snap.kernel is not None:
            s.overflows += snap.kernel.overflows_delta or 0
            s.drops += snap.kernel.drops_delta or 0
        s.own_drops = self._own_drops(snap)
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
        self._last = snap

    def _after_load(self, snap: Snapshot) -> bool:
        """Taken once the load's time was up: the generator said so (its drain, or it
        ended), or its clock's start plus the load's duration is past."""
        c = snap.client
        if c is None:
            return False
        if analysis.load_over(snap):
            return True
        started = c.running or c.elapsed > 0
        return started and snap.time > c.time - c.elapsed + self.summary.level.duration

    def _teardown(self, snap: Snapshot, t: float) -> None:
        """A sample after the load: its accepts and diagnoses, apart from the run's."""
        s = self.summary
        if s.teardown_from_s is None:
            s.teardown_from_s = t
        s.teardown_to_s = t
        s.teardown_accepts += sum(w.accepts or 0 for w in snap.workers if w.is_worker)
        for d in snap.diagnoses:
            seen = next((x for x in s.teardown_diagnoses if x.rule == d.rule), None)
            if seen is None:
                s.teardown_diagnoses.append(DiagnosisSeen(d.rule, d.severity, d.message, t))
            else:
                seen.samples += 1
        s.series.append(_series_row(snap, t, "teardown"))

    def _own_drops(self, snap: Snapshot) -> int | None:
        """Handshakes the server's own listening sockets dropped since the baseline (their
        sk_drops); None when a listener's drops are not read."""
        total = 0
        for ln in snap.listeners:
            key = (ln.port, ln.index, ln.inode)
            if ln.drops is None:
                return None
            base = self._drops0.setdefault(key, 0)  # a listener made after the baseline
            if base is None:
                return None
            total += max(0, ln.drops - base)
        return total

    def _baseline(self, snap: Snapshot) -> None:
        """Every worker's totals before the load, which the run's totals count from."""
        self._baseline_done = True
        self._first = snap
        self._drops0 = {(ln.port, ln.index, ln.inode): ln.drops for ln in snap.listeners}
        for w in snap.workers:
            if w.alive:
                self._base[w.key] = (
                    w.accepts_total or 0,
                    w.requests_total or 0,
                    w.cpu_seconds or 0.0,
                )
        if snap.model is not None:
            self._first_model = (snap.model.spawns or 0, snap.model.deaths or 0)
        self.summary.cpu_count = snap.host.cpu_count if snap.host else None
        if self._t0 is None:
            self._t0 = snap.time

    def _add_workers(self, snap: Snapshot) -> None:
        """Each worker's totals since the baseline (a worker first seen later: since zero)."""
        for w in snap.workers:
            if w.state == WorkerState.EMPTY:
                continue
            key = w.key
            row = self._rows.get(key)
            if row is None:
                if w.state == WorkerState.DEAD:
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
                row.requests = max(row.requests or 0, w.requests_total - r0)
            if w.cpu_seconds is not None:
                row.cpu_s = max(row.cpu_s, w.cpu_seconds - c0)
            row.alive_at_end = w.state != WorkerState.DEAD

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
        serving = {k: w for k, w in self._rows.items() if w.role == "worker"}  # not listeners
        acc = analysis.measure(
            "accepts", {k: (w.label, w.accepts) for k, w in serving.items()}, span
        )
        cpu = analysis.measure("cpu", {k: (w.label, w.cpu_s) for k, w in serving.items()}, span)
        s.accept_jain, s.accept_top_share, s.accept_n = acc.jain, acc.top_share, acc.n
        s.accept_max_over_mean, s.accept_top_worker = acc.max_over_mean, acc.top_worker
        s.cpu_jain, s.cpu_top_share = cpu.jain, cpu.top_share
        if self._master:
            s.master_cpu_max = max(self._master)
            s.master_cpu_mean = sum(self._master) / len(self._master)
        if self._host:
            s.host_cpu_mean = sum(self._host) / len(self._host)
        if self._last is not None:
            run = analysis.run_phases(self._first, self._last)
            if run is not None:
                s.queue_wait, s.server_wait, s.service = run.queue, run.server, run.service
        return s


def _series_row(snap: Snapshot, t: float, phase: str = "load") -> dict[str, Any]:
    c = snap.client
    a, cpu = snap.imbalance.accepts, snap.imbalance.cpu
    k = snap.kernel
    return {
        "t_s": round(t, 3),
        "rps": c.rps if c else None,
        "requests": c.requests if c else None,
        "errors": c.error_count if c else None,
        # no request (connect) done yet: unknown, not the generator's 0.0 defaults
        "latency_p50_ms": c.latency_ms.p50 if c and c.latency_ms.count else None,
        "latency_p99_ms": c.latency_ms.p99 if c and c.latency_ms.count else None,
        "connect_p99_ms": c.connect_ms.p99 if c and c.connect_ms.count else None,
        "open_connections": c.open_connections if c else None,
        "in_flight": c.in_flight if c else None,
        "oldest_wait_ms": rounded(c.oldest_wait_ms, 1) if c else None,
        "latency_all_p99_ms": c.latency_all_ms.p99 if c and c.latency_all_ms.count else None,
        "queue": snap.queue,
        "queue_limit": snap.queue_limit,
        "overflows_delta": k.overflows_delta if k else None,
        "drops_delta": k.drops_delta if k else None,
        "accept_jain": rounded(a.jain) if a else None,
        "accept_top_share": rounded(a.top_share) if a else None,
        "cpu_jain": rounded(cpu.jain) if cpu else None,
        "master_cpu": rounded(snap.model.master_cpu_percent, 1) if snap.model else None,
        "host_cpu": rounded(snap.host.cpu_percent, 1) if snap.host else None,
        "workers_live": len(snap.live_workers),
        "diagnoses": ";".join(d.rule for d in snap.diagnoses),
        **_phase_p99s(snap),
        "phase": phase,  # "load", or "teardown": after the load's time was up
    }


def _phase_p99s(snap: Snapshot) -> dict[str, float | None]:
    """Each phase's p99 over the analyser's window ending at this sample (None: unknown)."""
    ph = snap.window_phases
    out: dict[str, float | None] = {}
    for name, h in ph.items() if ph is not None else ():
        col = "service_p99_ms" if name == "service" else f"{name}_wait_p99_ms"
        out[col] = rounded(h.quantile_ms(0.99), 3) if h is not None else None
    for col in ("queue_wait_p99_ms", "server_wait_p99_ms", "service_p99_ms"):
        out.setdefault(col, None)
    return out


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
