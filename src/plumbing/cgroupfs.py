"""Where the cgroup hierarchies holding the `cpu` controller are mounted, and a CPU-limited
cgroup of our own (the lab's `--cpu-limit`, the tests) made and removed again.

Both hierarchies: cgroup v2 (`cpu.max`, one unified tree) and v1 (a `cpu` hierarchy with
`cpu.cfs_quota_us` / `cpu.cfs_period_us`), since hosts still mount v1 for `cpu` beside a
v2 tree without it. Hand-written: a few lines over /proc/self/mountinfo and the cgroup
files; no library in the dependency set reads or writes cgroups.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

__all__ = ["CgroupError", "Hierarchy", "LimitedCgroup", "cpu_hierarchies", "parse_mountinfo"]

PERIOD_US = 100_000  # the kernel's default CFS period (100 ms)
MIN_QUOTA_US = 1_000  # the kernel refuses a quota below 1 ms per period


class CgroupError(RuntimeError):
    """A CPU-limited cgroup could not be made (one line: what failed and the fix)."""


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy that can hold a CPU limit."""

    version: int  # 1 or 2
    mount: str  # where it is mounted, e.g. /sys/fs/cgroup/cpu
    root: str  # the cgroup the mount shows at its top ("/" unless a namespace's)

    def directory(self, path: str) -> str | None:
        """The directory of cgroup `path` (as /proc/PID/cgroup names it), None when the
        mount does not show it (another cgroup namespace's)."""
        if self.root != "/":
            if path != self.root and not path.startswith(self.root + "/"):
                return None
            path = path[len(self.root) :] or "/"
        if path.startswith("/.."):
            return None
        return os.path.join(self.mount, path.lstrip("/")).rstrip("/") or "/"


def parse_mountinfo(text: str) -> dict[int, Hierarchy]:
    """{1: the v1 hierarchy with the cpu controller, 2: the v2 one whose `cgroup.controllers`
    lists cpu, or else any v2 one} as mounted in `text` (/proc/self/mountinfo)."""
    out: dict[int, Hierarchy] = {}
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        root, mount = _unescape(fields[3]), _unescape(fields[4])
        fstype, options = rest[0], rest[2].split(",")
        if fstype == "cgroup" and "cpu" in options and 1 not in out:
            out[1] = Hierarchy(1, mount, root)
        elif fstype == "cgroup2" and 2 not in out:
            out[2] = Hierarchy(2, mount, root)
    return out


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape")


def cpu_hierarchies() -> dict[int, Hierarchy]:
    try:
        with open("/proc/self/mountinfo") as f:
            return parse_mountinfo(f.read())
    except OSError:
        return {}


def v2_has_cpu(h: Hierarchy) -> bool:
    """The unified tree's root offers the cpu controller (else v1 holds it)."""
    try:
        with open(os.path.join(h.mount, "cgroup.controllers")) as f:
            return "cpu" in f.read().split()
    except OSError:
        return False


class LimitedCgroup:
    """A cgroup of our own, child of the root of the hierarchy holding `cpu`, limited to
    `cores`; `add(pid)` moves a process in (its later children are born in it), `remove()`
    moves whatever is left back to the root and deletes it. Never touches another cgroup's
    limit: it writes only its own files and the root's `cgroup.procs` (to move ours out)."""

    def __init__(self, name: str, cores: float | None) -> None:
        hs = cpu_hierarchies()
        v2 = hs.get(2)
        h = v2 if v2 is not None and v2_has_cpu(v2) else hs.get(1)
        if h is None:
            raise CgroupError("no cgroup hierarchy with the cpu controller is mounted")
        self.hierarchy = h
        self.path = os.path.join(h.root, name)  # as /proc/PID/cgroup will name it
        base = h.directory(h.root)
        assert base is not None
        self.dir = os.path.join(base, name)
        self._base = base
        try:
            os.mkdir(self.dir)
        except OSError as e:
            raise CgroupError(
                f"cannot make cgroup {self.dir}: {e.strerror} (run as root, with the "
                "cgroup filesystem mounted read-write)"
            ) from e
        try:
            if cores is not None:
                self._limit(cores)
        except OSError as e:
            hint = ""
            if h.version == 2 and not os.path.exists(os.path.join(self.dir, "cpu.max")):
                hint = f" (the cpu controller is not enabled for children of {base}: "
                hint += f"echo +cpu > {os.path.join(base, 'cgroup.subtree_control')})"
            self.remove()
            raise CgroupError(f"cannot set a CPU limit on {self.dir}: {e.strerror}{hint}") from e

    def _limit(self, cores: float) -> None:
        quota = max(MIN_QUOTA_US, round(cores * PERIOD_US))
        if self.hierarchy.version == 2:
            self._write("cpu.max", f"{quota} {PERIOD_US}")
        else:
            self._write("cpu.cfs_period_us", str(PERIOD_US))
            self._write("cpu.cfs_quota_us", str(quota))

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(value)

    def add(self, pid: int) -> None:
        self._write("cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.dir, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def remove(self) -> None:
        """Move what is left to the root (a cgroup with processes cannot be deleted),
        then delete it. Safe to call twice."""
        for _ in range(20):  # a process forking while we move it: try a few rounds
            left = self.pids()
            if not left:
                break
            for pid in left:
                root_procs = os.path.join(self._base, "cgroup.procs")
                with contextlib.suppress(OSError), open(root_procs, "w") as f:
                    f.write(str(pid))
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.dir)
