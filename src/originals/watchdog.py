"""`python -m originals.watchdog SPEC_JSON`: run one original and take its whole tree down
with it, however serverscope ends.

The launcher starts this in a session of its own with a pipe on stdin. The watchdog
becomes a child subreaper (PR_SET_CHILD_SUBREAPER), starts the original as a
`plumbing.child.Child` (a session of its own, so httpd, which signals its whole process
group when it stops, cannot hit us; dying with the watchdog; its output on our stderr,
which the launcher keeps), and writes the original's pid on stdout. It then waits for one
of:
  - stdin at EOF: serverscope exited, even by SIGKILL (the kernel closes its end);
  - SIGTERM/SIGINT/SIGHUP: an orderly stop;
  - the original exiting by itself.
Then it stops the original's group (SIGTERM, SIGKILL after `grace` seconds), SIGKILLs every
descendant left (orphans are reparented to us, the subreaper, so none escapes by leaving
the group), reaps them all, removes the run directory, and exits with the original's exit
code (or 0 after a stop).
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time

from plumbing.child import Child
from plumbing.process import drain, readable

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def _descendants(root: int) -> list[int]:
    """Every process below `root`, from one pass over /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _reap_all(deadline: float, wake: int) -> bool:
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
            if readable(wake, min(left, 0.05)):
                drain(wake)


def _wait_for_an_end(original: Child, wake: int, stop_signal: list[int]) -> int:
    """Until stdin is at EOF (serverscope is gone), a stop signal, or the original exits
    by itself: its exit code then (128 + the signal that killed it), else 0."""
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "parent")
    sel.register(wake, selectors.EVENT_READ, "signal")  # SIGCHLD and the stop signals
    while not stop_signal:
        code = original.poll()
        if code is not None:
            return code if code >= 0 else 128 - code
        for key, _ in sel.select():
            if key.data == "signal":
                drain(wake)
                continue
            try:
                if not os.read(0, 4096):
                    return 0
            except OSError:
                return 0
    return 0


def main() -> int:
    spec = json.loads(sys.argv[1])
    argv: list[str] = spec["argv"]
    grace = float(spec.get("grace", 3.0))
    run_dir = spec.get("run_dir")
    me = os.getpid()
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    stop_signal: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: stop_signal.append(s))
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # only to write to the wake-up pipe
    try:
        # stdout too goes to our stderr: our stdout is the launcher's, for the pid alone
        original = Child(argv, name=argv[0], stderr=2)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"cannot run {argv[0]}: {e}", file=sys.stderr)
        code = 127
    else:
        os.write(1, f"{original.pid}\n".encode())
        code = _wait_for_an_end(original, wake_r, stop_signal)
        original.stop(grace)
        original.close()
    if not _reap_all(time.monotonic() + grace, wake_r):  # what left the original's group
        for pid in _descendants(me):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap_all(time.monotonic() + 5.0, wake_r)
    if run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
