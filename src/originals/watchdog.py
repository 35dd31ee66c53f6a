"""`python -m originals.watchdog SPEC_JSON`: run one original and take its whole tree down
with it, however serverscope ends.

The launcher starts this in a session of its own with a pipe on stdin. The watchdog
becomes a child subreaper (PR_SET_CHILD_SUBREAPER), forks the original into a new
session (so httpd, which signals its whole process group when it stops, cannot hit us)
with PR_SET_PDEATHSIG, and writes the original's pid on stdout. It then waits for one of:
  - stdin at EOF: serverscope exited, even by SIGKILL (the kernel closes its end);
  - SIGTERM/SIGINT/SIGHUP: an orderly stop;
  - the original exiting by itself.
Then it sends SIGTERM to the original's process group, waits up to `grace` seconds, sends
SIGKILL to the group and to every descendant left (orphans are reparented to us, the
subreaper, so none escapes by changing group), reaps them all, removes the run directory,
and exits with the original's exit code (or 0 after a stop).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import selectors
import shutil
import signal
import sys
import time
from typing import Any, NoReturn

from plumbing.process import die_with_parent, drain

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def _children_of(parent: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == parent:
            out.append(int(name))
    return out


def _reap_all(deadline: float, wake: int | None = None) -> bool:
    """Reap children until none is left (True) or the deadline passes (False); between
    tries, wait on the wake-up pipe (SIGCHLD writes to it) rather than sleep."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if wake is None:
                time.sleep(min(left, 0.01))
            elif select.select([wake], [], [], min(left, 0.05))[0]:
                drain(wake)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_descendants(root: int) -> None:
    todo = [root]
    while todo:
        for pid in _children_of(todo.pop()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            todo.append(pid)


def _exec_original(spec: dict[str, Any], watchdog: int) -> NoReturn:
    """In the forked child: a session of its own, die with the watchdog, exec the original."""
    argv: list[str] = spec["argv"]
    try:
        os.setsid()
        die_with_parent(watchdog)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # the original's output goes to our stderr; stdout is the launcher's
        if spec.get("cwd"):
            os.chdir(spec["cwd"])
        os.execvpe(argv[0], argv, spec.get("env") or os.environ)
    except BaseException as e:
        os.write(2, f"cannot run {argv[0]}: {e}\n".encode())
    os._exit(127)


def main() -> int:
    spec = json.loads(sys.argv[1])
    grace = float(spec.get("grace", 3.0))
    run_dir = spec.get("run_dir")
    me = os.getpid()
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    stop_signal = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: stop_signal.append(s))
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # only to write to the wake-up pipe
    pid = os.fork()
    if pid == 0:
        _exec_original(spec, me)
    os.write(1, f"{pid}\n".encode())
    pidfd = os.pidfd_open(pid)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "parent")
    sel.register(wake_r, selectors.EVENT_READ, "signal")
    sel.register(pidfd, selectors.EVENT_READ, "exited")
    code = 0
    done = False
    while not done and not stop_signal:
        for key, _ in sel.select():
            if key.data == "parent":
                try:
                    if not os.read(0, 4096):
                        done = True  # serverscope is gone
                except OSError:
                    done = True
            elif key.data == "signal":
                drain(wake_r)
            else:
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                code = code if code >= 0 else 128 - code
                done = True
    _signal_group(pid, signal.SIGTERM)
    if not _reap_all(time.monotonic() + grace, wake_r):
        _signal_group(pid, signal.SIGKILL)
        _kill_descendants(me)
        _reap_all(time.monotonic() + 5.0, wake_r)
    if run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
