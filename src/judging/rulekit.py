"""What the diagnosis rules share: how they format their figures and read the window.

Pure helpers over snapshots (no I/O), used by `diagnosis` and the rule modules beside it
(`skew`, `stalled`). Hand-written: a few lines of formatting and look-ups, the project's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from plumbing.loghist import LogHist
from values.findings import Diagnosis
from values.snapshot import Snapshot, WorkerSample
from values.units import dur

from . import analysis

Rule = Callable[[Sequence[Snapshot]], Diagnosis | None]
PHASE_MIN_COUNT = 20  # requests (or connections) in the window before a phase is cited


def pct(x: float) -> str:
    return f"{x:.0f}%"


def num(x: float) -> str:
    """1.0 -> '1', 0.75 -> '0.8', 12.3 -> '12'."""
    if abs(x - round(x)) < 0.05 or x >= 10:
        return f"{x:.0f}"
    return f"{x:.1f}"


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def span(win: Sequence[Snapshot]) -> str:
    return f"{num(analysis.covered_s(win))} s"


def live(s: Snapshot) -> tuple[WorkerSample, ...]:
    return s.live_workers


def window_phase(s: Snapshot, name: str, minimum: int = 1) -> LogHist | None:
    """The window's histogram of phase `name` ("queue", "server", "service") when it holds
    at least `minimum` values; None when unmeasured (or too few to cite)."""
    ph = s.window_phases
    h: LogHist | None = getattr(ph, name) if ph is not None else None
    if h is None or h.count < max(1, minimum):
        return None
    return h


def p(h: LogHist, q: float) -> str:
    return dur(h.quantile_ms(q))
