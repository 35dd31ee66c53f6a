"""Running a stack tool on a target, and py-spy (CPython) with it: finding the tool (or the
one line naming its package), running it as a child process within the capture's deadline
without ever leaving the target stopped, and saying why a refused ptrace was refused.
eu-stack and gdb are in readers.stacknative.

How long the target was stopped is watched from outside: while the tool runs, a thread
reads the target thread's state in /proc/PID/task/TID/stat about every 0.5 ms; the bound
reported is from the last sample before the first tracing stop ('t') to the first sample
after the last one (or, when no stop was seen, the longest interval between two samples:
a stop can hide in no longer one). py-spy's `--nonblocking` never attaches, so it is 0.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, replace

from values.stackvalues import CaptureFailed, Frame, StackCapture, ThreadStack

# Where pip puts py-spy beside this interpreter: `.venv/bin/serverscope` run without the
# venv activated has it there, not on PATH. Tests point it elsewhere to simulate none.
SCRIPTS_DIR: str | None = sysconfig.get_path("scripts") or os.path.dirname(sys.executable)
WHERE = {
    "py-spy": "the PyPI package py-spy (pip install py-spy)",
    "eu-stack": "the Debian package elfutils (apt-get install elfutils)",
    "gdb": "the Debian package gdb (apt-get install gdb)",
}
POLL_S = 0.0005
_DENIED = re.compile(r"Operation not permitted|Permission denied|os error (1|13)\b|EPERM")


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and name == "py-spy" and SCRIPTS_DIR:
        found = shutil.which(name, path=SCRIPTS_DIR)
    return found


def missing(name: str) -> str:
    return f"{name} is not installed: install {WHERE[name]}"


def thread_state(pid: int, tid: int) -> str | None:
    """The one-letter state of a thread (R, S, D, T, t...), None when it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    at = data.rfind(b")")
    return data[at + 2 : at + 3].decode() if at > 0 else None


def not_permitted(pid: int) -> str:
    """One line: why this process may not trace `pid`, and the setting or fix."""
    scope = None
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read().strip())
    except (OSError, ValueError):
        pass
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        owner = None
    if scope == 3:
        why = "kernel.yama.ptrace_scope is 3 (no ptrace until reboot)"
        return f"not permitted to trace pid {pid}: {why}"
    if os.geteuid() != 0:
        if owner is not None and owner != os.geteuid():
            return f"not permitted to trace pid {pid} (uid {owner}, not yours): run as root"
        if scope and scope > 0:
            return (
                f"not permitted to trace pid {pid}: kernel.yama.ptrace_scope is {scope}; "
                "run as root, or set it to 0 (sysctl kernel.yama.ptrace_scope=0)"
            )
        return f"not permitted to trace pid {pid}: run as root"
    return (
        f"not permitted to trace pid {pid}, even as root: CAP_SYS_PTRACE is missing "
        "(in a container: --cap-add SYS_PTRACE)"
    )


# -- running a tool while watching the target ------------------------------------------------


class StopWatch(threading.Thread):
    """Samples a thread's state until stopped; `bound()` is how long it can have been in a
    tracing stop (seconds), measured as the module docstring says."""

    def __init__(self, pid: int, tid: int) -> None:
        super().__init__(name=f"stopwatch-{pid}", daemon=True)
        self.path = f"/proc/{pid}/task/{tid}/stat"
        self.samples: list[tuple[float, bool]] = []
        self._done = threading.Event()

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            while True:
                t = time.monotonic()
                try:
                    data = os.pread(fd, 512, 0)
                except OSError:
                    break
                at = data.rfind(b")")
                self.samples.append((t, data[at + 2 : at + 3] == b"t"))
                if self._done.is_set():
                    break
                time.sleep(POLL_S)
        finally:
            os.close(fd)

    def finish(self) -> float | None:
        self._done.set()
        if self.ident is not None:
            self.join(2.0)
        s = self.samples
        if len(s) < 2:
            return None
        stopped = [i for i, (_, is_stopped) in enumerate(s) if is_stopped]
        if not stopped:
            return max(b[0] - a[0] for a, b in itertools.pairwise(s))
        first, last = stopped[0], stopped[-1]
        start = s[first - 1][0] if first > 0 else s[0][0]
        end = s[last + 1][0] if last + 1 < len(s) else s[-1][0]
        return end - start


@dataclass(frozen=True)
class ToolRun:
    code: int | None  # None: stopped at the deadline
    out: str
    err: str
    stopped_s: float | None
    notes: tuple[str, ...]


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"  # messages in one language, to be read
    env["RUST_BACKTRACE"] = "0"  # py-spy: the error, not its own backtrace
    env.pop("DEBUGINFOD_URLS", None)  # gdb and eu-stack fetch nothing from the network
    return env


def run_tool(argv: list[str], deadline: float, pid: int, tid: int | None, watch: bool) -> ToolRun:
    """Run a tool on `pid` until it ends or `deadline`; never leaves the target stopped."""
    target = tid if tid is not None else pid
    before = thread_state(pid, target)
    watcher = StopWatch(pid, target) if watch else None
    if watcher is not None:
        watcher.start()
    notes: list[str] = []
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tool_env(),
        start_new_session=True,  # its own group, so an overrun is stopped whole
    )
    code: int | None
    try:
        out, err = proc.communicate(timeout=max(0.05, deadline - time.monotonic()))
        code = proc.returncode
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        out, err = proc.communicate()
        code = None
    stopped = watcher.finish() if watcher is not None else None
    after = thread_state(pid, target)
    if after == "T" and before not in ("T", "t"):
        # a tracer that dies with the attach's SIGSTOP pending leaves a group-stop behind
        try:
            os.kill(pid, signal.SIGCONT)
            notes.append(f"{os.path.basename(argv[0])} left the target stopped: sent SIGCONT")
        except OSError:
            pass
    return ToolRun(
        code, out.decode(errors="replace"), err.decode(errors="replace"), stopped, tuple(notes)
    )


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _first_error(text: str) -> str:
    """The tool's own first error line, shortened (py-spy: 'Error: ...' and its cause)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    err = next((ln for ln in lines if ln.startswith("Error:")), lines[0] if lines else "")
    err = err.removeprefix("Error:").strip()
    cause = next((ln for ln in lines if re.match(r"^0: ", ln)), None)
    if cause:
        err += f" ({cause[3:]})"
    return err[:200]


def failed(tool: str, run: ToolRun, pid: int, timeout_what: str) -> CaptureFailed:
    if run.code is None:
        return CaptureFailed(f"{tool} did not finish {timeout_what}; stopped it")
    text = run.err + "\n" + run.out
    if not os.path.exists(f"/proc/{pid}"):
        return CaptureFailed(f"no process {pid} (it exited)")
    if _DENIED.search(text):
        return CaptureFailed(not_permitted(pid))
    return CaptureFailed(f"{tool} failed (code {run.code}): {_first_error(text)}")


# -- py-spy ----------------------------------------------------------------------------------


def _py_module(short: str) -> str | None:
    if not short.endswith(".py"):
        return None
    return short[:-3].replace("/", ".").removesuffix(".__init__") or None


def parse_py_spy(text: str) -> tuple[ThreadStack, ...]:
    threads = []
    for t in json.loads(text):
        frames = []
        for f in t.get("frames") or ():
            native = f.get("module") is not None  # py-spy names a C frame's library there
            short = f.get("short_filename") or ""
            frames.append(
                Frame(
                    function=f.get("name") or "??",
                    file=None if native else f.get("filename"),
                    line=(f.get("line") or None) if not native else None,
                    module=short if native else _py_module(short),
                    native=native,
                )
            )
        state = "active" if t.get("active") else "idle"
        if t.get("owns_gil"):
            state += ", holds the GIL"
        tid = t.get("os_thread_id")
        threads.append(ThreadStack(tid, t.get("thread_name") or "", state, tuple(frames)))
    return tuple(threads)


def py_spy(base: StackCapture, deadline: float, *, native: bool) -> StackCapture:
    exe = find_tool("py-spy")
    if exe is None:
        raise CaptureFailed(missing("py-spy"))
    argv = [exe, "dump", "--pid", str(base.pid), "--json"]
    notes: list[str] = []
    if not native:
        # a read without stopping can catch a thread mid-change: try again, then stop it
        for _ in range(2):
            run = run_tool([*argv, "--nonblocking"], deadline, base.pid, base.tid, False)
            if run.code == 0:
                how = "py-spy --nonblocking reads the interpreter's memory without stopping it"
                return replace(
                    base,
                    method="py-spy dump --nonblocking",
                    threads=parse_py_spy(run.out),
                    stopped_s=0.0,
                    stopped_how=how,
                    notes=tuple(notes),
                )
            if run.code is None or _DENIED.search(run.err) or time.monotonic() > deadline:
                raise failed("py-spy", run, base.pid, "in time")
            notes.append(f"py-spy --nonblocking failed: {_first_error(run.err)}")
        notes.append("read again with the target stopped")
    else:
        argv.append("--native")
    run = run_tool(argv, deadline, base.pid, base.tid, True)
    if run.code != 0:
        raise failed("py-spy", run, base.pid, "in time")
    return replace(
        base,
        method="py-spy dump" + (" --native" if native else ""),
        threads=parse_py_spy(run.out),
        stopped_s=run.stopped_s,
        stopped_how="py-spy's ptrace stop, seen in /proc",
        notes=tuple(notes) + run.notes,
    )
