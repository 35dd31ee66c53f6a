"""What every widget is given to draw: one snapshot, its recent history, and UI state.

Widgets only render a `Frame` (a snapshot in, pixels out); measuring stays in the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from values.snapshot import Snapshot, WorkerKey


@dataclass(frozen=True)
class Frame:
    snapshot: Snapshot
    history: tuple[Snapshot, ...] = ()  # oldest first; ends with `snapshot`
    selected: WorkerKey | None = None  # the worker faults act on
    paused_pids: frozenset[int] = field(default_factory=frozenset)  # SIGSTOPped by us
    threads: bool = False  # attach: thread rows unfolded under their process (t)
    compact: int = 0  # how tight the measures' column is (LabScreen shares the height):
    # 0 all of it; 1 (a short screen too) one-line phases; 2 also no client phases lines,
    # no imbalance header, no throughput sparkline


def rate(count: int | None, interval_s: float | None) -> float | None:
    """A per-interval count as a per-second rate (None when either is unknown)."""
    if count is None or not interval_s:
        return None
    return count / interval_s
