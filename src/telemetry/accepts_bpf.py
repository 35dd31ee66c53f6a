"""Exact accepts per process and thread of a real server, counted in the kernel with eBPF.

sock_diag can only estimate accepts (a connection opened and closed between two samples
is never seen: at 10.6k req/s with `Connection: close` every worker showed 0
connections). Here Debian's `bpftrace` counts successful returns of the accept4/accept
syscalls on the tracepoints `syscalls:sys_exit_accept4` and `sys_exit_accept` (kprobes
on the accept functions did not work on the project's machines; these tracepoints did,
once tracefs is mounted), keyed by pid and tid, for the server's root and the children
and grandchildren of the root (`curtask->real_parent`, which needs the kernel's BTF), so
respawned workers are counted without restarting bpftrace. The whole map (cumulative
counts) is printed as JSON every `period_ms`: printing then clearing it lost accepts made
between the two (58 of 60 in a test), so it is never cleared.

`unavailable()` says why it cannot run (not root, no bpftrace, no tracepoint, no BTF) in
one line, so the caller falls back to the sock_diag estimate and says so.
bpftrace is its own process (started in its own session), stopped with SIGINT, then
SIGKILL if it has not gone within 5 s; `stop()` waits for it, so no process is left.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time

TRACEFS = "/sys/kernel/tracing"
TRACEPOINTS = ("sys_exit_accept4", "sys_exit_accept")


class BpfUnavailable(RuntimeError):
    """Exact accepts cannot be counted here; the message says why and what would fix it."""


def _ensure_tracefs() -> str | None:
    """The tracepoints' directory, mounting tracefs when it is not mounted (root only)."""
    for base in (TRACEFS, "/sys/kernel/debug/tracing"):
        d = f"{base}/events/syscalls"
        if os.path.isdir(d):
            return d
    if os.path.isdir(TRACEFS):
        subprocess.run(
            ["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True, check=False
        )
        if os.path.isdir(f"{TRACEFS}/events/syscalls"):
            return f"{TRACEFS}/events/syscalls"
    return None


def unavailable() -> str | None:
    """None when exact accepts can be counted, else the reason (one line)."""
    if os.geteuid() != 0:
        return "unavailable: counting accepts with eBPF needs root"
    if shutil.which("bpftrace") is None:
        return "unavailable: bpftrace is not installed (Debian package bpftrace)"
    d = _ensure_tracefs()
    if d is None:
        return f"unavailable: no syscall tracepoints (tracefs not mountable at {TRACEFS})"
    for tp in TRACEPOINTS:
        if not os.path.isdir(f"{d}/{tp}"):
            return f"unavailable: no tracepoint syscalls:{tp} in this kernel"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "unavailable: the kernel has no BTF (/sys/kernel/btf/vmlinux), needed for pids"
    return None


def script(root: int, period_ms: int) -> str:
    probes = ", ".join(f"tracepoint:syscalls:{tp}" for tp in TRACEPOINTS)
    who = (
        f"pid == {root} || curtask->real_parent->tgid == {root} || "
        f"curtask->real_parent->real_parent->tgid == {root}"
    )
    return (
        'BEGIN { printf("ready\\n"); }\n'
        f"{probes} /args->ret >= 0 && ({who})/ {{ @a[pid, tid] = count(); }}\n"
        f'interval:ms:{period_ms} {{ print(@a); printf("tick\\n"); }}\n'
    )


def _child_setup() -> None:
    """In the child, before exec: bpftrace's maps need locked memory; and it gets SIGINT
    if we die without stopping it (PR_SET_PDEATHSIG), so it never outlives us."""
    try:
        resource.setrlimit(
            resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
    except (ValueError, OSError):
        pass
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class AcceptCounter:
    """Cumulative accepts per (pid, tid) of a server's tree while running.

    with AcceptCounter(root_pid) as acc:   # raises BpfUnavailable with the reason
        ...
        acc.sync()                         # the kernel's counts up to now are in
        acc.per_pid()
    """

    def __init__(self, root: int, period_ms: int = 250) -> None:
        self.root = root
        self.period_ms = period_ms
        self.proc: subprocess.Popen[str] | None = None
        self._totals: dict[tuple[int, int], int] = {}
        self._flushes = 0
        self._cond = threading.Condition()
        self._attached = False
        self._stderr: list[str] = []
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> AcceptCounter:
        reason = unavailable()
        if reason:
            raise BpfUnavailable(reason)
        self.proc = subprocess.Popen(
            ["bpftrace", "-f", "json", "-e", script(self.root, self.period_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=_child_setup,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        threading.Thread(target=self._read_err, daemon=True).start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._attached:
                if self.proc.poll() is not None:
                    err = " ".join(self._stderr)[-300:]
                    self.stop()
                    raise BpfUnavailable(f"unavailable: bpftrace exited ({err.strip()})")
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stop()
                    raise BpfUnavailable(f"unavailable: bpftrace did not attach in {timeout} s")
                self._cond.wait(min(left, 0.1))
        return self

    def _read_err(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.strip())

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            kind = msg.get("type")
            with self._cond:
                if kind == "printf" and str(msg.get("data", "")).strip() == "ready":
                    # BEGIN runs once every probe is attached ("attached_probes" is printed
                    # before: accepts right after it were missed)
                    self._attached = True
                elif kind == "map":
                    for key, n in (msg.get("data", {}).get("@a") or {}).items():
                        pid, tid = (int(x) for x in key.split(","))
                        self._totals[(pid, tid)] = int(n)  # the map is cumulative
                elif kind == "printf" and str(msg.get("data", "")).strip() == "tick":
                    self._flushes += 1  # an empty map prints nothing: ticks mark flushes
                self._cond.notify_all()

    def sync(self, timeout: float = 5.0) -> None:
        """Wait until a flush that started after this call has been read (2 flushes)."""
        with self._cond:
            target = self._flushes + 2
            deadline = time.monotonic() + timeout
            while self._flushes < target:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc is None or self.proc.poll() is not None:
                    raise TimeoutError("bpftrace stopped flushing its counts")
                self._cond.wait(left)

    def totals(self) -> dict[tuple[int, int], int]:
        with self._cond:
            return dict(self._totals)

    def per_pid(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for (pid, _), n in self.totals().items():
            out[pid] = out.get(pid, 0) + n
        return out

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            os.kill(p.pid, signal.SIGINT)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        if self._thread is not None:
            self._thread.join(5)
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()

    def __enter__(self) -> AcceptCounter:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
