"""What judging writes into a snapshot: the imbalance indices over the window and the
diagnoses with their severity (values.snapshot.Snapshot.imbalance, .diagnoses)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_ORDER = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)  # most severe first


def severity_rank(severity: str) -> int:
    """0 for the most severe; an unknown severity after every known one."""
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


@dataclass(frozen=True, slots=True)
class Imbalance:
    """How unevenly one quantity is spread over the workers, over the sliding window.

    x_i = the quantity for worker i over the window, n = workers that were alive in it.
    With no events in the window (sum x == 0, or n == 0) the indices are None, not 1.
    """

    metric: str  # "accepts", "connections" or "cpu"
    window_s: float  # length of the window actually covered, seconds
    n: int  # workers counted
    total: float  # sum x (accepts: count; connections: mean open; cpu: CPU seconds)
    jain: float | None = None  # (sum x)^2 / (n * sum x^2): 1/n (one does all) .. 1 (even)
    top_share: float | None = None  # max x / sum x, 0..1
    max_over_mean: float | None = None  # max x / mean x = n * top_share
    top_worker: str | None = None  # label of the worker with max x ("worker 3", "pid 12")


@dataclass(frozen=True, slots=True)
class ImbalanceSet:
    accepts: Imbalance | None = None
    connections: Imbalance | None = None
    cpu: Imbalance | None = None

    def items(self) -> tuple[tuple[str, Imbalance | None], ...]:
        return (("accepts", self.accepts), ("connections", self.connections), ("cpu", self.cpu))


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One named phenomenon, in one line with its numbers.

    e.g. Diagnosis("accept_skew", "warning",
                   "accept skew: worker 3 took 71% of accepts in 5 s (Jain 0.41)")
    """

    rule: str  # stable rule id: accept_skew, starvation, accept_queue_overflow, ...
    severity: Severity
    message: str  # the one line, starting with the phenomenon's name

    def __str__(self) -> str:
        return self.message
