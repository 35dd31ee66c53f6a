"""Before and after: two recordings' figures side by side, each difference with its
evidence, and a verdict that holds only what chance is unlikely to have made.

    before = windows.read(read_recording(a), "before.jsonl")
    after = windows.read(read_recording(b), "after.jsonl")
    v = judge(before, after)
    v.headline()   # "top share of accepts 96% -> 27% (p < 0.001); latency p99 ..."

How (judging.windows, judging.resample):
- both recordings are cut into windows of the same number of samples, long enough that
  the per-sample series no longer correlate; every figure is a function of window sums;
- each difference is judged by a permutation test over the windows (the p-value) and
  given a 95% interval by a bootstrap of each recording's windows;
- the p-values are adjusted with Holm's method over every figure compared, and a
  difference counts when its adjusted p is below ALPHA: two recordings of the same setup
  then show a false difference in at most 1% of comparisons (measured: bench/bench_verdict.py);
- workers are matched by rank (each recording's busiest first), since the pids differ.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from values.recording import read_recording
from values.units import dur

from . import resample, windows
from .figures import CONFOUND_CORES, CONTEXT, FIGURES, Figure, Scale, rule_figure
from .resample import np
from .verdict_values import ALPHA, Row, Side, Verdict
from .windows import MID_US, PHASES, Recording, Windows, block_length, cut

# -- judging ----------------------------------------------------------------------------------


def judge_files(before: str | Path, after: str | Path, *, alpha: float = ALPHA) -> Verdict:
    """Two recordings judged (`serverscope diff`); each is named by its file name. Errors as
    the reader gives them (FormatError, OSError: one line each), ValueError when one is too
    short to judge."""
    recs = [windows.read(read_recording(p), Path(p).name) for p in (before, after)]
    return judge(recs[0], recs[1], alpha=alpha)


def judge(before: Recording, after: Recording, *, alpha: float = ALPHA) -> Verdict:
    """Both recordings' figures, side by side, each difference tested (see the module)."""
    # one function on purpose: the steps of one comparison, read in order (module docstring)
    for r in (before, after):
        if len(r.samples) < 2:
            raise ValueError(f"{r.name}: {len(r.samples)} samples: too short to judge")
    rules = sorted(set(before.rule_messages) | set(after.rule_messages))
    blocks = block_length([before, after])
    period = before.period or after.period or 0.0
    figures = [f for f in FIGURES if f.shown_for(before) and f.shown_for(after)]
    figures += [rule_figure(r, max(before.window_s, after.window_s)) for r in rules]
    if before.has_host and after.has_host:
        figures.append(CONTEXT)
    wa, wb = cut(before, blocks.k, rules), cut(after, blocks.k, rules)
    own_a, own_b = _buckets_in_use(_parts(wa), _parts(wb))
    rows: dict[str, Row] = {}
    groups: dict[int, list[Figure]] = {}
    for f in figures:
        why = f.needs(before) or f.needs(after)
        b, a = (
            None if f.needs(rec) else _value(f, parts)
            for rec, parts in ((before, own_a), (after, own_b))
        )
        shown = (_shown(f, before, b), _shown(f, after, a))
        if why is None and (b is None or a is None):
            why = "no data on one side"
        rows[f.key] = Row(
            f.key, f.label, f.scale, f.better, b, a, shown, note=why or "", points=f.points
        )
        if why is None:  # its windows: the common length, or longer if the figure needs
            k = max(blocks.k, math.ceil(f.min_window_s / period - 1e-9) if period else 1)
            groups.setdefault(k, []).append(f)
    judged: list[tuple[Figure, resample.Test, tuple[float, float] | None]] = []
    for k, figs in sorted(groups.items()):
        ca, cb = (wa, wb) if k == blocks.k else (cut(before, k, rules), cut(after, k, rules))
        if resample.least_p(ca.count, cb.count) >= alpha:
            short = f"too short: {ca.count} + {cb.count} windows of {k * period:.2g} s"
            for f in figs:  # no split of so few windows could make it significant
                rows[f.key] = dataclasses.replace(rows[f.key], note=short)
            continue
        pa, pb = _buckets_in_use(_parts(ca), _parts(cb))
        stats = [(f.stat, f.parts, f.scale == Scale.RATIO) for f in figs]
        tests = resample.permutation(*_ranked(pa, pb), stats)
        intervals = resample.bootstrap(pa, pb, stats)
        for f, t, ci in zip(figs, tests, intervals, strict=True):
            if t.degenerate:
                rows[f.key] = dataclasses.replace(rows[f.key], note="equal in every window")
            else:
                judged.append((f, t, ci))
    # the setup's figures are one family (Holm); the machine's is one test of its own
    setup = [(f.key, t.p) for f, t, _ in judged if f.better != 0]
    holm = dict(zip([k for k, _ in setup], resample.holm([p for _, p in setup]), strict=True))
    for f, t, ci in judged:
        p_holm = holm.get(f.key, t.p)
        row = rows[f.key]
        rows[f.key] = dataclasses.replace(
            row,
            change=_change(row, f.scale),
            interval=_back(ci, f.scale),
            p=t.p,
            p_holm=p_holm,
            significant=p_holm < alpha,
        )
    _confound(rows, figures, shared=not (windows.dealt(before) and windows.dealt(after)))
    notes = []
    if blocks.capped:
        notes.append(
            f"the samples correlate over {blocks.wanted} samples but the recordings leave room "
            f"for windows of {blocks.k}: the p-values may be smaller than they should"
        )
    return Verdict(
        before=_side(before, wa, own_a),
        after=_side(after, wb, own_b),
        rows=tuple(rows[f.key] for f in figures),
        blocks=blocks,
        window_s=blocks.k * period,
        alpha=alpha,
        notes=tuple(notes),
    )


def _confound(rows: dict[str, Row], figures: list[Figure], *, shared: bool) -> None:
    """When the rest of the machine used a different amount of CPU in the two recordings
    (significantly, and by CONFOUND_CORES or more), a timing figure's difference is not
    put down to the setup: it is shown, marked, and left out of the differences. So is a
    share's where either recording's workers took connections by being free (`shared`:
    not dealt by a hash or a master's rotation, or not read)."""
    ctx = rows.get(CONTEXT.key)
    if ctx is None or not ctx.significant or abs(ctx.change or 0.0) < CONFOUND_CORES:
        return
    why = f"the rest of the machine used {ctx.shown[0]} then {ctx.shown[1]}"
    for f in figures:
        if (f.timing or (f.shares and shared)) and rows[f.key].significant:
            rows[f.key] = dataclasses.replace(rows[f.key], significant=False, confounded=why)


def _value(f: Figure, parts: dict[str, np.ndarray]) -> float | None:
    x = resample.observed(f.stat, parts, f.parts)
    return x if math.isfinite(x) else None


def _shown(f: Figure, rec: Recording, value: float | None) -> str:
    """The value as printed; a recording without latency histograms shows the client's
    own percentiles of its last run (not tested: one figure, no windows)."""
    last = rec.last_latency_ms
    if f.key in ("latency_p50", "latency_p99") and not rec.has_latency and last is not None:
        return dur(last[0] if f.key == "latency_p50" else last[1])
    return f.show(value) if value is not None else "-"


def _parts(w: Windows) -> dict[str, np.ndarray]:
    parts = {
        "duration": w.duration,
        "samples": w.samples,
        "requests": w.requests,
        "errors": w.errors,
        "latency": w.latency,
        "latency_max": w.latency_max,
        "accepts": w.accepts,
        "cpu_s": w.cpu_s,
        "queue": w.queue,
        "in_flight": w.in_flight,
        "other_cpu": w.other_cpu,
    }
    for i, name in enumerate(PHASES):
        parts[f"phase_{name}"] = w.phases[i]
        parts[f"phase_{name}_max"] = w.phases_max[i]
    for rule, secs in w.rules.items():
        parts[f"rule_{rule}"] = secs
    return parts


HISTOGRAMS = ("latency", *(f"phase_{name}" for name in PHASES))


def _buckets_in_use(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each histogram part cut to the buckets either recording uses (the same columns in
    both, so their windows can be pooled), with their values as the part `*_mid`."""
    a, b = dict(a), dict(b)
    for part in HISTOGRAMS:
        used = (a[part].sum(axis=0) + b[part].sum(axis=0)) > 0
        for d in (a, b):
            d[part] = d[part][:, used]
            d[part + "_mid"] = MID_US[used]
    return a, b


def _ranked(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The worker columns of both matched by rank (busiest first) and padded with idle
    workers to the same count, so that windows of the two can be pooled."""
    a, b = dict(a), dict(b)
    for part in ("accepts", "cpu_s"):
        n = max(a[part].shape[1], b[part].shape[1], 1)
        for d in (a, b):
            x = d[part]
            x = x[:, np.argsort(-x.sum(axis=0), kind="stable")]
            d[part] = np.pad(x, ((0, 0), (0, n - x.shape[1])))
    return a, b


def _change(row: Row, scale: Scale) -> float | None:
    if row.before is None or row.after is None:
        return None
    if scale == Scale.RATIO:
        return row.after / row.before - 1 if row.before > 0 else None
    return row.after - row.before


def _back(ci: tuple[float, float] | None, scale: Scale) -> tuple[float, float] | None:
    """A bootstrap interval of log(after / before) as after / before - 1."""
    if ci is None or scale != Scale.RATIO:
        return ci
    return (math.exp(ci[0]) - 1, math.exp(ci[1]) - 1)


def _side(rec: Recording, w: Windows, parts: dict[str, np.ndarray]) -> Side:
    def shares(x: np.ndarray) -> tuple[float, ...]:
        tot = x.sum(axis=0)
        s = float(tot.sum())
        return tuple(sorted((float(v) / s for v in tot), reverse=True)) if s > 0 else ()

    return Side(
        name=rec.name,
        model=rec.model,
        load=rec.load,
        duration_s=rec.duration_s,
        samples=len(rec.samples),
        windows=w.count,
        accept_shares=shares(parts["accepts"]) if rec.has_accepts else (),
        cpu_shares=shares(parts["cpu_s"]),
        diagnoses=dict(rec.rule_messages),
    )
