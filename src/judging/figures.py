"""The figures a verdict compares (judging.verdict): each a function of a recording's
window sums (judging.windows), its scale, which way is better, and how it is printed.

Adding one is adding a `Figure` to FIGURES (or a rule to the diagnoses, which add theirs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from values.units import dur

from . import resample
from .windows import PHASES, Recording


class Scale(StrEnum):
    RATIO = "ratio"  # compared as after / before (throughput, latency)
    DIFFERENCE = "difference"  # compared as after - before (shares, indices, depths)


@dataclass(frozen=True)
class Figure:
    key: str  # stable id, in JSON
    label: str  # as tables print it
    scale: Scale
    better: int  # +1: higher is better, -1: lower is better, 0: context, not the setup's
    stat: resample.Stat
    parts: tuple[str, ...]  # the window sums it reads
    show: Callable[[float], str]  # a value as the table prints it
    needs: Callable[[Recording], str | None]  # why a recording cannot give it, or None
    min_window_s: float = 0.0  # judged over windows at least this long (see rule_figure)
    points: bool = False  # a share (0..1): its change is printed in percentage points
    shown_for: Callable[[Recording], bool] = lambda r: True  # left out unless both are
    timing: bool = False  # a busier machine changes it by itself (see CONTEXT)
    shares: bool = False  # ... and so it does where the workers share a queue (windows.dealt)


def _share(v: float) -> str:
    return f"{100 * v:.0f}%"


def _rate(v: float) -> str:
    return f"{v:,.0f} req/s" if v >= 10 else f"{v:.1f} req/s"


def _needs_client(r: Recording) -> str | None:
    return None if r.has_client else "no load generator in the recording"


def _needs_latency(r: Recording) -> str | None:
    if not r.has_client:
        return "no load generator in the recording"
    if not r.has_latency:
        return "the recording holds the run's percentiles only (made before histograms)"
    return None


def _needs_accepts(r: Recording) -> str | None:
    return None if r.has_accepts else "accepts not counted"


def _needs_phase(i: int) -> Callable[[Recording], str | None]:
    return lambda r: None if r.has_phases[i] else "not measured"


def _always(r: Recording) -> str | None:
    return None


def _quantile(part: str, q: float) -> resample.Stat:
    """A histogram's quantile; its buckets' values are the part `*_mid` (the buckets no
    window of either recording holds are left out: 30 of 200 for a typical latency)."""
    return lambda s: resample.quantile_ms(s[part], s[part + "_max"], q, s[part + "_mid"])


PHASE_LABELS = ("queue wait", "in-server wait", "service")

FIGURES: tuple[Figure, ...] = (
    Figure(
        "throughput",
        "throughput",
        Scale.RATIO,
        +1,
        lambda s: resample.ratio(s["requests"], s["duration"]),
        ("requests", "duration"),
        _rate,
        _needs_client,
        timing=True,
    ),
    Figure(
        "accept_rate",
        "connections accepted",
        Scale.RATIO,
        +1,
        lambda s: resample.ratio(s["accepts"].sum(axis=1), s["duration"]),
        ("accepts", "duration"),
        lambda v: f"{v:,.0f}/s" if v >= 10 else f"{v:.1f}/s",
        _needs_accepts,
        shown_for=lambda r: not r.has_client,  # throughput's stand-in when attached
        timing=True,
    ),
    Figure(
        "errors",
        "failed requests",
        Scale.DIFFERENCE,
        -1,
        lambda s: resample.ratio(s["errors"], s["errors"] + s["requests"]),
        ("errors", "requests"),
        lambda v: f"{100 * v:.1f}%",
        _needs_client,
        points=True,
    ),
    Figure(
        "latency_p50",
        "latency p50",
        Scale.RATIO,
        -1,
        _quantile("latency", 0.5),
        ("latency", "latency_max", "latency_mid"),
        dur,
        _needs_latency,
        timing=True,
    ),
    Figure(
        "latency_p99",
        "latency p99",
        Scale.RATIO,
        -1,
        _quantile("latency", 0.99),
        ("latency", "latency_max", "latency_mid"),
        dur,
        _needs_latency,
        timing=True,
    ),
    Figure(
        "accept_top_share",
        "top share of accepts",
        Scale.DIFFERENCE,
        -1,
        lambda s: resample.top_share(s["accepts"]),
        ("accepts",),
        _share,
        _needs_accepts,
        points=True,
        shares=True,
    ),
    Figure(
        "accept_jain",
        "Jain index of accepts",
        Scale.DIFFERENCE,
        +1,
        lambda s: resample.jain(s["accepts"]),
        ("accepts",),
        lambda v: f"{v:.2f}",
        _needs_accepts,
        shares=True,
    ),
    Figure(
        "cpu_top_share",
        "top share of worker CPU",
        Scale.DIFFERENCE,
        -1,
        lambda s: resample.top_share(s["cpu_s"]),
        ("cpu_s",),
        _share,
        _always,
        points=True,
        shares=True,
    ),
    Figure(
        "cpu_jain",
        "Jain index of worker CPU",
        Scale.DIFFERENCE,
        +1,
        lambda s: resample.jain(s["cpu_s"]),
        ("cpu_s",),
        lambda v: f"{v:.2f}",
        _always,
        shares=True,
    ),
    Figure(
        "queue",
        "accept queue (mean depth)",
        Scale.DIFFERENCE,
        -1,
        lambda s: resample.ratio(s["queue"], s["samples"]),
        ("queue", "samples"),
        lambda v: f"{v:.1f}",
        _always,
        timing=True,  # under an open load, as deep as arrivals x the wait (Little)
    ),
    Figure(
        "in_flight",
        "requests waiting (mean in flight)",
        Scale.DIFFERENCE,
        -1,
        lambda s: resample.ratio(s["in_flight"], s["samples"]),
        ("in_flight", "samples"),
        lambda v: f"{v:.1f}",
        _needs_client,
        # the requests a stalled worker strands are here while no latency counts them (they
        # never complete); the rest are rate x latency (Little's law): a busier machine's
        # longer latencies raise it by themselves
        timing=True,
    ),
    *(
        Figure(
            f"{name}_p99",
            f"{PHASE_LABELS[i]} p99",
            Scale.RATIO,
            -1,
            _quantile(f"phase_{name}", 0.99),
            (f"phase_{name}", f"phase_{name}_max", f"phase_{name}_mid"),
            dur,
            _needs_phase(i),
            timing=True,
        )
        for i, name in enumerate(PHASES)
    ),
)

# The machine beside the server: the CPU its other tenants used (judging.windows.other_cpu).
# Not the setup's figure (better = 0: never "better" or "worse"), but when it differs
# between the recordings (significantly, and by at least CONFOUND_CORES) the timing
# figures' differences cannot be put down to the setup, and the verdict says so.
CONTEXT = Figure(
    "other_cpu",
    "rest of the machine (CPU)",
    Scale.DIFFERENCE,
    0,
    lambda s: resample.ratio(s["other_cpu"], s["duration"]),
    ("other_cpu", "duration"),
    lambda v: f"{v:.2f} cores",
    lambda r: None if r.has_host else "the host's CPU not read",
)
CONFOUND_CORES = 0.25  # a quarter of a core more or less used by others


def rule_figure(rule: str, window_s: float) -> Figure:
    """The share of the time a diagnosis was on screen. A rule judges a sliding window of
    `window_s` (the analyser's, 5 s), so it stays on or off for that long whatever happens:
    its samples are independent only that far apart, and so are its windows here."""
    part = f"rule_{rule}"
    return Figure(
        f"diagnosis:{rule}",
        f"{rule.replace('_', ' ')} on screen",
        Scale.DIFFERENCE,
        -1,
        lambda s: resample.ratio(s[part], s["duration"]),
        (part, "duration"),
        lambda v: f"{100 * v:.0f}% of the time",
        _always,
        min_window_s=window_s,
        points=True,
    )
