"""`--cpu-limit CORES`: the lab's server in a CPU-limited cgroup of its own, so that
throttling can be seen in the lab (the workers panel's title, the cpu_throttled and
cpu_oversubscribed diagnoses) as it happens in a container.

The cgroup is made after the server started (its root and the workers it forked are moved
in; workers forked later are born in it) and removed when the server stops, on every exit
the session has (a stop, a restart, quitting, a failed start). A cgroup left by a
serverscope killed with SIGKILL is named for its pid: the next lab run removes it when that
pid is gone and nothing is left in it. Only cgroups named `serverscope-lab-*` are touched.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from typing import Protocol

from plumbing.cgroupfs import CgroupError, LimitedCgroup, cpu_hierarchies
from servers.supervisor import ServerError

__all__ = ["PREFIX", "CpuLimitError", "confine", "release"]

PREFIX = "serverscope-lab-"
MOVE_ROUNDS = 20  # a worker forked while we move the others: look again, this many times
_seq = itertools.count()
_NAME = re.compile(rf"{PREFIX}(\d+)-\d+")


class CpuLimitError(ServerError):
    """The CPU limit could not be set (one line, with the fix): the start fails with it."""


class _Server(Protocol):  # what confine needs of a lab server (lab.server.Server)
    def pids(self) -> list[int]: ...


def confine(server: _Server, cores: float | None) -> LimitedCgroup | None:
    """Move `server`'s processes into a new cgroup limited to `cores`; None without a
    limit. Raises CpuLimitError with nothing of its own left behind."""
    if cores is None:
        return None
    _remove_stale()
    try:
        cg = LimitedCgroup(f"{PREFIX}{os.getpid()}-{next(_seq)}", cores)
    except CgroupError as e:
        raise CpuLimitError(f"--cpu-limit: {e}") from e
    try:
        for _ in range(MOVE_ROUNDS):
            inside = set(cg.pids())
            left = [pid for pid in server.pids() if pid not in inside]
            if not left:
                return cg
            for pid in left:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    cg.add(pid)
        raise CpuLimitError("--cpu-limit: the server's processes kept changing; try again")
    except OSError as e:
        cg.remove()
        raise CpuLimitError(f"--cpu-limit: cannot move the server into {cg.dir}: {e}") from e
    except BaseException:
        cg.remove()
        raise


def release(cg: LimitedCgroup | None) -> None:
    """Remove the cgroup `confine` made (whatever is left in it goes to the root)."""
    if cg is not None:
        cg.remove()


def _remove_stale() -> None:
    """Empty `serverscope-lab-PID-N` cgroups whose serverscope (PID) is gone."""
    for h in cpu_hierarchies().values():
        base = h.directory(h.root)
        if base is None or not os.path.isdir(base):
            continue
        for name in os.listdir(base):
            m = _NAME.fullmatch(name)
            if m is None or os.path.exists(f"/proc/{m.group(1)}"):
                continue
            with contextlib.suppress(OSError):  # not empty, or not ours to remove: leave it
                os.rmdir(os.path.join(base, name))
