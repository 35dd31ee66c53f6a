"""A cgroup's CPU limit and how often it throttled the processes in it: one `CpuLimit` per
cgroup the sampled processes live in (`Snapshot.cpu_cgroups`), read by readers.cgroupcpu.

Units: a limit is CPU time per period, in microseconds (cgroup v2 `cpu.max`, v1
`cpu.cfs_quota_us` / `cpu.cfs_period_us`), so `cores` = quota / period (0.2: a fifth of
one core); throttling is the limiting cgroup's `cpu.stat`: periods in which it had runnable
tasks, periods in which it ran out of quota, and the time its tasks waited throttled
(v1 `throttled_time` in ns, v2 `throttled_usec`), here in seconds. Totals since the cgroup
was made; `*_delta` over the sampling interval. Unknown is None, never 0.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CpuLimit", "by_pid", "cores_text", "limit_line", "throttled_over"]


@dataclass(frozen=True, slots=True)
class CpuLimit:
    """One cgroup holding sampled processes, its CPU limit and its throttling."""

    path: str  # the processes' cgroup as /proc/PID/cgroup names it ("/" the root)
    version: int  # 1: the v1 `cpu` hierarchy; 2: the unified (v2) hierarchy
    pids: tuple[int, ...] = ()  # the sampled processes in it (sorted)
    limited: bool | None = None  # True: a quota on its path (itself or an ancestor);
    # False: none up to the root ("max", -1); None: the files could not be read
    limit_path: str | None = None  # the cgroup whose quota is the tightest on the path
    quota_us: int | None = None  # CPU microseconds allowed per period; None: no limit/unread
    period_us: int | None = None  # the period of that quota, microseconds
    nr_periods: int | None = None  # cpu.stat of limit_path (else path): periods, total
    nr_throttled: int | None = None  # ... periods it was throttled in, total
    throttled_s: float | None = None  # ... seconds its tasks spent throttled, total
    periods_delta: int | None = None  # nr_periods in the interval (None: first sample)
    throttled_delta: int | None = None  # nr_throttled in the interval
    throttled_s_delta: float | None = None  # throttled_s in the interval

    @property
    def cores(self) -> float | None:
        """The limit in cores (quota / period); None when unlimited or unknown."""
        if self.quota_us is None or not self.period_us:
            return None
        return self.quota_us / self.period_us

    @property
    def throttled_fraction(self) -> float | None:
        """Throttled periods / periods in the interval; None without periods to judge."""
        if self.throttled_delta is None or not self.periods_delta:
            return None
        return self.throttled_delta / self.periods_delta


def by_pid(cgroups: Sequence[CpuLimit]) -> dict[int, CpuLimit]:
    """pid -> the cgroup it lives in."""
    return {pid: cg for cg in cgroups for pid in cg.pids}


def cores_text(cores: float) -> str:
    """0.2 -> '0.2 core', 1 -> '1 core', 1.5 -> '1.5 cores', 0.05 -> '0.05 core'."""
    figure = f"{cores:.2f}".rstrip("0").rstrip(".")
    return f"{figure} core" if cores <= 1 else f"{figure} cores"


def throttled_over(readings: Iterable[CpuLimit]) -> tuple[int, int, float] | None:
    """(throttled periods, periods, seconds throttled) summed over successive readings of
    one cgroup (their interval figures); None when none has them."""
    periods = throttled = 0
    seconds, seen = 0.0, False
    for c in readings:
        if c.periods_delta is None or c.throttled_delta is None:
            continue
        seen = True
        periods += c.periods_delta
        throttled += c.throttled_delta
        seconds += c.throttled_s_delta or 0.0
    return (throttled, periods, seconds) if seen else None


def limit_line(
    latest: Sequence[CpuLimit],
    workers: Collection[int],
    history: Sequence[Sequence[CpuLimit]] = (),
    *,
    detail: bool = True,
) -> str | None:
    """One line for the CPU limit on the processes `workers`: 'CPU limit 0.2 core,
    throttled in 62% of periods' over `history` (each snapshot's cgroups, oldest first,
    the latest's included), else over the latest interval; with `detail` the counts
    follow, '(31/50, 3.1 s)'. 'CPU limit unknown' when their cgroup could not be read;
    None when no limit is set on them (nothing to say)."""
    mine = [c for c in latest if any(p in workers for p in c.pids)]
    if not mine:
        return None
    limited = [c for c in mine if c.cores is not None]
    if not limited:
        return "CPU limit unknown" if any(c.limited is None for c in mine) else None
    c = min(limited, key=lambda x: x.cores or 0.0)
    more = f" (+{len(limited) - 1} more cgroups)" if len(limited) > 1 else ""
    head = f"CPU limit {cores_text(c.cores or 0.0)}{more}"
    same = [x for snap in history for x in snap if x.path == c.path] or [c]
    over = throttled_over(same)
    if over is None or not over[1]:
        return f"{head}, throttled -" if over is None else f"{head}, no period ran"
    throttled, periods, seconds = over
    line = f"{head}, throttled in {100 * throttled / periods:.0f}% of periods"
    return f"{line} ({throttled}/{periods}, {seconds:.1f} s)" if detail else line
