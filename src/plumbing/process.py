"""Process plumbing shared by the launcher (plumbing.child), the root process, the masters,
the load runner and the lab: die with the parent, the fd limit, pid checks, the environment
for a child.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

PR_SET_PDEATHSIG = 1
SRC_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../src
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl  # looked up now: plumbing.child calls it between fork and exec


def die_with_parent(expected_parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG).

    The parent may have died before the call: then our parent is already someone else
    and we leave at once. Must be called in the child, right after fork/exec.
    """
    if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_PDEATHSIG) failed: " + os.strerror(err))
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    except (ValueError, OSError):
        return soft


def readable(fd: int, timeout: float | None) -> bool:
    """True once `fd` is readable (or at EOF/hang-up) within `timeout` s (None: no limit).
    poll(), not select(): a monitor of 1,024 workers holds fds past select()'s FD_SETSIZE
    (1024), where select.select raises ValueError."""
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))


def drain(fd: int) -> None:
    """Empty a non-blocking wake-up pipe (a self-pipe's bytes carry no data)."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
    return state not in (b"Z", b"X")


def python_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child `python -m <module>` of this tree: `base` (default: ours)
    with the source root first on PYTHONPATH, so the child imports the same code as we do
    (an editable install or a plain checkout alike)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC_ROOT, env.get("PYTHONPATH", "")) if p)
    return env
