"""Each sampled process's cgroup, the CPU limit on it and how often it was throttled.

For every distinct pid: /proc/PID/cgroup names its cgroup in the hierarchy holding the
`cpu` controller (the v1 line listing `cpu`, else the v2 `0::` line); the limit is the
tightest quota on that cgroup's path up to the root (a container's limit is often set on
a parent: v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`); throttling is the
limiting cgroup's `cpu.stat` (nr_periods, nr_throttled, v1 throttled_time ns or v2
throttled_usec). Hand-written: a few small files (no library in the dependency set reads
cgroups). Cost: a process's cgroup and a path's limit change rarely, so they are re-read
every MOVED_S and REFRESH_S; only each cgroup's cpu.stat is read every sample (one file
per cgroup, not per worker: 250 workers in one cgroup cost one read).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal, TypeVar

from plumbing.cgroupfs import Hierarchy, cpu_hierarchies, v2_has_cpu
from values.cgroupcpu import CpuLimit

from .procfs import KeptFds

__all__ = ["REFRESH_S", "CgroupCpuReader", "cgroup_of", "parse_cpu_stat", "parse_proc_cgroup"]

N = TypeVar("N", int, float)

REFRESH_S = 1.0  # seconds a cgroup's limit is trusted before it is read again
MOVED_S = 5.0  # ... and a process's cgroup, staggered over the pids (up to 2x this), so a
# sample re-reads a few of 250 pids, not all at once: processes rarely move, and one
# whose cgroup went away (its cpu.stat unreadable) is read again at the next sample


def parse_proc_cgroup(text: str, version: int) -> str | None:
    """The cgroup path of the hierarchy holding `cpu` from /proc/PID/cgroup's `text`:
    the v1 line whose controllers include `cpu` (version 1), the `0::` line (version 2)."""
    for line in text.splitlines():
        num, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if version == 2 and num == "0" and controllers == "":
            return path
        if version == 1 and "cpu" in controllers.split(","):
            return path
    return None


def parse_cpu_stat(text: str) -> tuple[int | None, int | None, float | None]:
    """(nr_periods, nr_throttled, throttled seconds) from a cpu.stat; None for what it
    lacks (v2 without the cpu controller has only usage)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    throttled: float | None = None
    if "throttled_usec" in values:
        throttled = values["throttled_usec"] / 1e6
    elif "throttled_time" in values:
        throttled = values["throttled_time"] / 1e9
    return values.get("nr_periods"), values.get("nr_throttled"), throttled


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # gone, not permitted, or no such controller file
        return None


def _quota(h: Hierarchy, directory: str) -> tuple[int, int] | Literal[False] | None:
    """This cgroup's own (quota, period) in us; False when it has none; None unreadable."""
    if h.version == 2:
        text = _read(os.path.join(directory, "cpu.max"))
        if text is None:  # the root, or a cgroup without the cpu controller: no limit
            return False if os.path.isdir(directory) else None
        quota, _, period = text.strip().partition(" ")
        if quota == "max":
            return False
        return int(quota), int(period)
    quota_text = _read(os.path.join(directory, "cpu.cfs_quota_us"))
    period_text = _read(os.path.join(directory, "cpu.cfs_period_us"))
    if quota_text is None or period_text is None:
        return None
    if int(quota_text) < 0:
        return False
    return int(quota_text), int(period_text)


def limit_of(h: Hierarchy, path: str) -> tuple[bool | None, str | None, int | None, int | None]:
    """(limited, limiting cgroup, quota us, period us): the tightest quota on `path` and
    its ancestors (a parent's limit caps its children); limited None when unreadable."""
    best: tuple[str, int, int] | None = None
    cur = path
    while True:
        directory = h.directory(cur)
        if directory is None:
            return None, None, None, None
        q = _quota(h, directory)
        if q is None:
            return None, None, None, None
        if q is not False and (best is None or q[0] / q[1] < best[1] / best[2]):
            best = (cur, q[0], q[1])
        if cur in ("/", h.root, ""):
            break
        cur = os.path.dirname(cur.rstrip("/")) or "/"
    if best is None:
        return False, None, None, None
    return True, best[0], best[1], best[2]


def cgroup_of(pid: int, h: Hierarchy, proc: str = "/proc") -> str | None:
    text = _read(f"{proc}/{pid}/cgroup")
    return None if text is None else parse_proc_cgroup(text, h.version)


class CgroupCpuReader:
    """`read(now, pids)` -> one CpuLimit per cgroup those processes live in, its interval
    figures against the previous call's. Empty when no hierarchy holds `cpu`."""

    def __init__(
        self, hierarchies: dict[int, Hierarchy] | None = None, *, proc: str = "/proc"
    ) -> None:
        self.proc = proc  # where /proc is (tests: a tree of their own)
        hs = cpu_hierarchies() if hierarchies is None else hierarchies
        v2 = hs.get(2)
        # v2 when its tree offers cpu (cpu.max there), else v1's cpu hierarchy, else a v2
        # tree without it (its cgroups have no limit: reads say "no limit", not unknown)
        self.hierarchy = v2 if v2 is not None and v2_has_cpu(v2) else hs.get(1) or v2
        self._where: dict[int, tuple[float, str | None]] = {}  # pid -> (read again at, cgroup)
        self._limits: dict[str, tuple[float, tuple]] = {}  # cgroup -> (read at, limit_of)
        self._prev: dict[str, tuple[int | None, int | None, float | None]] = {}
        self._fds = KeptFds()  # /proc/PID/cgroup: pread 5.8 us against 26 us open/read/close

    def _cgroup_of(self, pid: int, h: Hierarchy) -> str | None:
        """cgroup_of through a kept fd (bound to the task: a pid reused opens anew)."""
        path = f"{self.proc}/{pid}/cgroup"
        data = self._fds.read_current(path)
        if not data:
            return None
        return parse_proc_cgroup(data.decode(errors="replace"), h.version)

    def close(self) -> None:
        self._fds.close()

    def read(self, now: float, pids: Iterable[int]) -> tuple[CpuLimit, ...]:
        h = self.hierarchy
        if h is None:
            return ()
        members: dict[str, list[int]] = {}
        where = {}
        for pid in pids:
            seen = self._where.get(pid)
            if seen is None or now >= seen[0]:
                again = now + MOVED_S * (1.0 + (pid % 64) / 64)
                seen = (again, self._cgroup_of(pid, h))
            where[pid] = seen
            if seen[1] is not None:
                members.setdefault(seen[1], []).append(pid)
        for gone in self._where.keys() - where.keys():
            fd = self._fds.fds.pop(f"{self.proc}/{gone}/cgroup", None)
            if fd is not None:
                os.close(fd)
        self._where = where  # pids no longer sampled are forgotten
        out, prev, limits = [], {}, {}
        for path in sorted(members):
            cached = self._limits.get(path)
            if cached is None or now - cached[0] >= REFRESH_S:
                cached = (now, limit_of(h, path))
            limits[path] = cached
            limited, limit_path, quota, period = cached[1]
            directory = h.directory(limit_path or path)
            text = _read(os.path.join(directory, "cpu.stat")) if directory else None
            stat = parse_cpu_stat(text) if text is not None else (None, None, None)
            if text is None:  # gone (its processes moved, it was removed): unknown now,
                # not its cached limit, and read again at the next sample
                limited, limit_path, quota, period = None, None, None, None
                del limits[path]
                for pid in members[path]:
                    del where[pid]
            before = self._prev.get(limit_path or path)
            prev[limit_path or path] = stat
            out.append(
                CpuLimit(
                    path=path,
                    version=h.version,
                    pids=tuple(sorted(members[path])),
                    limited=limited,
                    limit_path=limit_path,
                    quota_us=quota,
                    period_us=period,
                    nr_periods=stat[0],
                    nr_throttled=stat[1],
                    throttled_s=stat[2],
                    periods_delta=_delta(stat[0], before[0] if before else None),
                    throttled_delta=_delta(stat[1], before[1] if before else None),
                    throttled_s_delta=_delta(stat[2], before[2] if before else None),
                )
            )
        self._limits, self._prev = limits, prev
        return tuple(out)


def _delta(value: N | None, before: N | None) -> N | None:
    """value - before (a counter: never below 0, a re-made cgroup starts afresh)."""
    if value is None or before is None:
        return None
    return max(value - before, 0)
