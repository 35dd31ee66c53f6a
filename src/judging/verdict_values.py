"""What `serverscope diff` and `fix` conclude, as values: each figure's row (before, after,
change, interval, p), each side's description, and the verdict over them, with their one-line
texts and JSON (judging.verdict computes them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import resample
from .figures import Scale
from .windows import Blocks

ALPHA = 0.01  # family-wise: the chance of one false difference among all figures compared


@dataclass(frozen=True)
class Row:
    """One figure before and after, and what the evidence says of the difference."""

    key: str
    label: str
    scale: Scale
    better: int
    before: float | None
    after: float | None
    shown: tuple[str, str]  # before and after as the table prints them
    change: float | None = None  # after / before - 1 (ratio) or after - before
    interval: tuple[float, float] | None = None  # 95% bootstrap interval of `change`
    p: float | None = None  # permutation p-value (None: not tested)
    p_holm: float | None = None  # adjusted over every figure tested
    significant: bool = False
    note: str = ""  # why it was not tested
    points: bool = False  # a share: its change in percentage points
    confounded: str = ""  # why a difference found is not the setup's (judging.figures.CONTEXT)

    @property
    def tested(self) -> bool:
        return self.p_holm is not None

    @property
    def context(self) -> bool:
        """The machine's figure, not the setup's (judging.figures.CONTEXT)."""
        return self.better == 0

    @property
    def direction(self) -> str:
        """'better', 'worse' or 'no significant difference' ('not tested: why')."""
        if not self.tested:
            return f"not tested: {self.note}" if self.note else "not tested"
        if self.confounded:
            return f"not judged: {self.confounded}"
        if not self.significant or self.change is None:
            return "no significant difference"
        if self.context:
            return "differs: the machine, not the setup"
        up = self.change > 0
        return "better" if up == (self.better > 0) else "worse"

    def change_text(self) -> str:
        """'x0.10 (0.08..0.12)' (ratio), '-59 pts (-67..-49)' (shares), '+0.66 (+0.58..+0.71)'."""
        if self.change is None:
            return "-"
        ci = self.interval
        if self.scale == Scale.RATIO:
            text = f"x{_sig(1 + self.change)}"
            return text + (f" ({_sig(1 + ci[0])}..{_sig(1 + ci[1])})" if ci else "")
        fmt = _points if self.points else _signed
        text = fmt(self.change)
        lo, hi = (fmt(x).removesuffix(" pts") for x in ci) if ci else ("", "")
        return text + (f" ({lo}..{hi})" if ci else "")

    def p_text(self) -> str:
        if self.p_holm is None:
            return "-"
        return "p < 0.001" if self.p_holm < 0.001 else f"p = {self.p_holm:.2g}"

    def summary(self) -> str:
        """'top share of accepts 96% -> 27% (p < 0.001)'."""
        what = f"{self.label} {self.shown[0]} -> {self.shown[1]}"
        if not self.tested or self.confounded:
            return f"{what} ({self.direction})"
        if not self.significant:
            return f"{what} (no significant difference, {self.p_text()})"
        return f"{what} ({self.p_text()})"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "figure": self.key,
            "label": self.label,
            "scale": str(self.scale),
            "before": _finite(self.before),
            "after": _finite(self.after),
            "change": _finite(self.change),
            "interval_95": list(self.interval) if self.interval else None,
            "p": self.p,
            "p_holm": self.p_holm,
            "significant": self.significant,
            "confounded": self.confounded or None,
            "verdict": self.direction,
        }


@dataclass(frozen=True)
class Side:
    """What a recording is, as the verdict names it."""

    name: str
    model: str | None
    load: str | None
    duration_s: float
    samples: int
    windows: int
    accept_shares: tuple[float, ...]  # each worker's share of the accepts, largest first
    cpu_shares: tuple[float, ...]
    diagnoses: dict[str, str]  # rule -> its first message

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "recording": self.name,
            "model": self.model,
            "load": self.load,
            "duration_s": round(self.duration_s, 3),
            "samples": self.samples,
            "windows": self.windows,
            "accept_shares": [round(x, 4) for x in self.accept_shares],
            "cpu_shares": [round(x, 4) for x in self.cpu_shares],
            "diagnoses": self.diagnoses,
        }


@dataclass(frozen=True)
class Verdict:
    before: Side
    after: Side
    rows: tuple[Row, ...]
    blocks: Blocks
    window_s: float  # seconds per window (samples x the median period)
    alpha: float = ALPHA
    draws: int = resample.DRAWS
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tested(self) -> list[Row]:
        return [r for r in self.rows if r.tested]

    @property
    def differences(self) -> list[Row]:
        """The setup's figures that differ (the machine's own is context, not one)."""
        return [r for r in self.rows if r.significant and not r.context]

    @property
    def confounded(self) -> list[Row]:
        return [r for r in self.rows if r.confounded]

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.key == key), None)

    def headline(self, keys: Sequence[str] = ()) -> str:
        """The figures `keys` names (a remedy's), else the differences found, in one line;
        'no significant difference in N figures (...)' when there are none."""
        chosen = [r for k in keys if (r := self.row(k)) is not None and r.before is not None]
        if not chosen:
            chosen = sorted(self.differences, key=lambda r: (r.p_holm or 1.0, r.key))[:3]
        mixed = self.confounded
        if not chosen:
            judged = [r for r in self.tested if not r.context and not r.confounded]
            text = (
                f"no significant difference in {len(judged)} figures "
                f"(Holm-adjusted p >= {self.alpha:g} for each)"
            )
            if mixed:
                text += (
                    f"; {len(mixed)} timing figure{'s' * (len(mixed) > 1)} not judged: "
                    f"{mixed[0].confounded}"
                )
            return text
        return "; ".join(r.summary() for r in chosen)

    def method(self) -> str:
        wa, wb = self.before.windows, self.after.windows
        family = [r for r in self.tested if not r.context]
        return (
            f"judged over {wa} + {wb} windows of {self.blocks.k} sample"
            f"{'s' * (self.blocks.k != 1)} ({self.window_s:.2g} s): a permutation test over "
            f"windows ({self.draws:,} splits at most) for p, a bootstrap of windows for the "
            f"95% interval; p adjusted (Holm) over {len(family)} figures; a difference "
            f"counts at p < {self.alpha:g}"
        )

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.to_json_dict(),
            "after": self.after.to_json_dict(),
            "alpha": self.alpha,
            "method": {
                "windows_samples": self.blocks.k,
                "window_s": round(self.window_s, 3),
                "decorrelation_samples": self.blocks.wanted,
                "windows_shorter_than_correlation": self.blocks.capped,
                "p": "permutation test over windows, two-sided; Holm-adjusted",
                "max_permutations": self.draws,
                "interval": "95% percentile bootstrap over each recording's windows",
                "summary": self.method(),
            },
            "figures": [r.to_json_dict() for r in self.rows],
            "differences": [r.key for r in self.differences],
            "headline": self.headline(),
            "notes": list(self.notes),
        }


def _sig(x: float) -> str:
    """A factor in 2-3 significant figures, never in exponent form."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def _points(x: float) -> str:
    """A change of share in percentage points."""
    v = 100 * x
    return f"{v:+.0f} pts" if abs(v) >= 9.5 else f"{v:+.1f} pts"


def _signed(x: float) -> str:
    return f"{x:+.2f}" if abs(x) < 10 else f"{x:+,.0f}"


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 6)
