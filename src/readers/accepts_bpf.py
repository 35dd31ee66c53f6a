"""Exact accepts per process and thread of a real server, counted in the kernel with eBPF.

sock_diag can only estimate accepts (a connection opened and closed between two samples
is never seen: at 10.6k req/s with `Connection: close` every worker showed 0
connections). Here Debian's `bpftrace` counts successful returns of the accept4/accept
syscalls on the tracepoints `syscalls:sys_exit_accept4` and `sys_exit_accept` (kprobes
on the accept functions did not work on the project's machines; these tracepoints did,
once tracefs is mounted), keyed by pid and tid, for the server's root and the children
and grandchildren of the root (`curtask->real_parent`, which needs the kernel's BTF), so
respawned workers are counted without restarting bpftrace. The whole map (cumulative
counts) is printed as JSON when the reader asks (`flush()`: a sample asks once, and gets
the kernel's counts as of then): printing then clearing it lost accepts made between the
two (58 of 60 in a test), so it is never cleared. Printing every map 4 times a second
instead was most of bpftrace's own CPU at 250 workers (bench/README.md).

Queue wait, in the same bpftrace process when the listening ports are given:
per accepted connection, from the kernel's arrival of its first request bytes to accept()
(0 when the bytes came after accept), the definition of `snapshot.Phases.queue`, with
tracepoints only:
- `sock:inet_sock_set_state` SYN_RECV -> ESTABLISHED on one of the server's ports (in
  its network namespace, by the socket's netns inode, when it is not ours): the
  child socket's handshake completed, it joins the accept queue; its address (`skaddr`) is
  remembered as pending;
- `sock:sk_data_ready` on a pending socket: its first bytes arrived (timestamp kept once);
- `syscalls:sys_exit_accept4` / `sys_exit_accept` of the server's tree: the accepted
  socket is found from the returned fd (`curtask->files->fdt->fd[ret]`, then
  `file->private_data` -> `struct socket` -> `sk`, read through BTF), so it works whether
  the server asked for the peer's address or not (libuv passes NULL); the wait is recorded
  per pid in plumbing.loghist's buckets, computed in the kernel (a 5-step bit length), so
  no event per connection crosses to user space;
- `inet_sock_set_state` -> CLOSE forgets a pending socket (reset before accept).
Measured here against ground truth (a server that sleeps before accept(); client
connect+send time vs. server accept time on the same monotonic clock): 507.5 / 357.1 /
206.7 ms measured for 507.7 / 357.1 / 206.7 ms true (within 0.2 ms; the difference is
the time from connect() returning to the bytes' arrival). Not measured (so not counted,
never counted as 0): connections already queued or accepted when bpftrace attached, TCP
Fast Open ones (accepted before the handshake completes), and sockets accepted by a
process outside the tree. Kprobes (tcp_v4_syn_recv_sock, inet_csk_accept) are what
Cloudflare's accept-latency histogram uses; they are not available on these kernels.
The two sock tracepoints run on every TCP state change and every socket's received data
on the host, so each has one program, and the accept count shares the queue's (cost in the
kernel: bench/README.md).
With the queue's, the events on the ports' sockets that change what a connection dump
shows are counted (one number, `changes()`), so a sample may keep the last dump
(readers.portquiet; the program is readers.bpfscript's): three more tracepoints, on every
TCP sendmsg and data read on the host (kernel cost: bench/bench_portquiet.py).
`queue_unavailable()` says in one line why queue wait cannot be measured (no
`sock:sk_data_ready`, added in Linux 6.3, or no `sock:inet_sock_set_state`).

`unavailable()` says why it cannot run (not root, no bpftrace, no tracepoint, no BTF) in
one line, so the caller falls back to the sock_diag estimate and says so.
bpftrace is its own process (started in its own session), stopped with SIGINT, then
SIGKILL if it has not gone within 5 s; `stop()` waits for it, so no process is left.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import threading
import time

from plumbing import loghist
from plumbing.loghist import LogHist

from .bpfscript import FLUSH_TRACEPOINT, LOGHIST_INDEX, TRACEPOINTS, script

__all__ = ["LOGHIST_INDEX", "AcceptCounter", "BpfUnavailable", "script"]

TRACEFS = "/sys/kernel/tracing"
QUEUE_TRACEPOINTS = ("inet_sock_set_state", "sk_data_ready")  # in events/sock
CHANGE_TRACEPOINTS = (
    "tcp/tcp_retransmit_synack",
    "tcp/tcp_rcv_space_adjust",
    "sock/sock_send_length",
)
QUEUE_METHOD = "eBPF tracepoints (first bytes' arrival -> accept)"
MAP_KEYS_MAX = 65536  # bpftrace's 4,096 default: 20 workers x 200 buckets, or 4,096
# pending connections, would fill it (a full map drops new keys: connections unmeasured)


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
    for tp in (*TRACEPOINTS, FLUSH_TRACEPOINT):
        if not os.path.isdir(f"{d}/{tp}"):
            return f"unavailable: no tracepoint syscalls:{tp} in this kernel"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "unavailable: the kernel has no BTF (/sys/kernel/btf/vmlinux), needed for pids"
    return None


def queue_unavailable() -> str | None:
    """None when queue wait can be measured (given that `unavailable()` is None), else why."""
    reason = unavailable()
    if reason:
        return reason
    d = _ensure_tracefs()
    assert d is not None
    sock = os.path.join(os.path.dirname(d), "sock")
    for tp in QUEUE_TRACEPOINTS:
        if not os.path.isdir(f"{sock}/{tp}"):
            return f"unavailable: no tracepoint sock:{tp} in this kernel (needs Linux 6.3+)"
    return None


def changes_unavailable() -> str | None:
    """None when the events on the ports' sockets can be counted (readers.portquiet)
    given that queue wait can be measured, else why."""
    d = _ensure_tracefs()
    for tp in CHANGE_TRACEPOINTS if d else ("syscalls",):
        if d is None or not os.path.isdir(os.path.join(os.path.dirname(d), tp)):
            return f"unavailable: no tracepoint {tp.replace('/', ':')} in this kernel"
    return None


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


def per_pid(totals: dict[tuple[int, int], int]) -> dict[int, int]:
    """Accepts per process from `totals()`'s per (pid, tid)."""
    out: dict[int, int] = {}
    for (pid, _), n in totals.items():
        out[pid] = out.get(pid, 0) + n
    return out


class AcceptCounter:
    """Cumulative accepts per (pid, tid) of a server's tree while running.

    with AcceptCounter(root_pid) as acc:   # raises BpfUnavailable with the reason
        ...
        acc.flush()                        # the kernel's counts up to now are in
        acc.per_pid()
    """

    def __init__(
        self,
        root: int,
        ports: tuple[int, ...] = (),
        netns: int | None = None,
        changes: bool = True,
    ) -> None:
        """`ports`: the server's listening ports, to measure queue wait too (when the
        kernel has the tracepoints: else `queue_note` says why and nothing is measured);
        `netns`: the inode of their network namespace (None: any); `changes`: count the
        events on the ports' sockets too, where the kernel can (`changes()`)."""
        self.root = root
        self.netns = netns
        # what asks this bpftrace, and no other, for a flush (bpfscript.FLUSH_TRACEPOINT;
        # no pid filter: bpftrace's pid is the host's, ours may be a container's)
        self._key = random.randrange(1 << 20, 1 << 31)
        self.ports = tuple(ports)
        self.queue_note: str | None = (
            None if ports else "unavailable: the server listens on no TCP port"
        )
        self.proc: subprocess.Popen[str] | None = None
        self._totals: dict[tuple[int, int], int] = {}
        self._qcounts: dict[int, dict[int, int]] = {}  # pid -> bucket -> count
        self._qsum: dict[int, int] = {}
        self._qmax: dict[int, int] = {}
        self._qseen = 0  # queue maps read; the LogHists are rebuilt only when it moved
        self._qcache: tuple[int, dict[int, LogHist], LogHist] = (0, {}, LogHist())
        self._asked = 0  # flushes asked for
        self._answered = 0  # the latest asked for whose maps have been read (ticks N)
        self.flushes = 0  # flushes read (tests, bench: one a sample, none on its own)
        self.want_changes = changes
        self.counts_changes = False  # whether @ch is counted (changes_unavailable())
        self._changes = 0  # @ch: events on the ports' sockets since start (script())
        self._cond = threading.Condition()
        self._attached = False
        self._stderr: list[str] = []
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> AcceptCounter:
        reason = unavailable()
        if reason:
            raise BpfUnavailable(reason)
        if self.ports:
            self.queue_note = queue_unavailable()
        ports = self.ports if self.queue_note is None else ()
        self.counts_changes = self.want_changes and bool(ports) and not changes_unavailable()
        # the monitor's own connections to the ports (mod_status polls) are not counted
        prog = script(
            self.root, self._key, ports, self.netns, self.counts_changes, monitor=os.getpid()
        )
        self.proc = subprocess.Popen(
            ["bpftrace", "-f", "json", "-e", prog],
            env={**os.environ, "BPFTRACE_MAP_KEYS_MAX": str(MAP_KEYS_MAX)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=_child_setup,
        )
        try:  # from here on: a Ctrl-C as it starts (its readers too) does not leave it running
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
            threading.Thread(target=self._read_err, daemon=True).start()
            self._await_attached(self.proc, timeout)
        except BaseException:  # also Ctrl-C while it attaches: it is not left running
            self.stop()
            raise
        return self

    def _await_attached(self, proc: subprocess.Popen[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._attached:
                if proc.poll() is not None:
                    err = " ".join(self._stderr)[-300:]
                    raise BpfUnavailable(f"unavailable: bpftrace exited ({err.strip()})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BpfUnavailable(f"unavailable: bpftrace did not attach in {timeout} s")
                self._cond.wait(min(left, 0.1))

    def _read_err(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.strip())

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        # a map line equal to that map's last one read would replace its values with
        # themselves (values replace, keys are never removed): not parsed again (250 idle
        # workers: ~1,000 entries parsed 4 times a second for nothing)
        last: dict[str, str] = {}
        for line in self.proc.stdout:
            at = line.find('"@')
            name = line[at : line.find('"', at + 1)] if at >= 0 else ""
            if name and last.get(name) == line:
                continue
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
                elif kind == "map":  # every map is cumulative: values replace
                    if name:
                        last[name] = line
                    data = msg.get("data") or {}
                    for key, n in (data.get("@a") or {}).items():
                        pid, tid = (int(x) for x in key.split(","))
                        self._totals[(pid, tid)] = int(n)
                    if any(k in data for k in ("@qh", "@qs", "@qm")):
                        self._qseen += 1
                    for key, n in (data.get("@qh") or {}).items():
                        pid, i = (int(x) for x in key.split(","))
                        self._qcounts.setdefault(pid, {})[i] = int(n)
                    for key, n in (data.get("@qs") or {}).items():
                        self._qsum[int(key)] = int(n)
                    for key, n in (data.get("@qm") or {}).items():
                        self._qmax[int(key)] = int(n)
                    if "@ch" in data:
                        self._changes = int(data["@ch"])
                elif kind == "printf" and str(msg.get("data", "")).startswith("tick "):
                    # an empty map prints nothing: ticks mark flushes (after their maps)
                    self._answered = max(self._answered, int(msg["data"].split()[1]))
                    self.flushes += 1
                self._cond.notify_all()

    def flush(self, timeout: float = 1.0) -> bool:
        """Ask bpftrace to print its maps and wait until they are read: the counts are then
        the kernel's as of this call. False when no answer came within `timeout` (the
        counts read before stand, and `changes()` is None until one comes)."""
        with self._cond:
            if self.proc is None or self.proc.poll() is not None:
                return False
            self._asked += 1
            n = self._asked
            try:  # fails at once (no such `which`): the call is only seen by bpftrace
                os.getpriority(self._key, n)
            except OSError:
                pass
            deadline = time.monotonic() + timeout
            while self._answered < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self._cond.wait(left)
        return True

    def sync(self, timeout: float = 5.0) -> None:
        """`flush()`, raising when bpftrace did not answer."""
        if not self.flush(timeout):
            raise TimeoutError("bpftrace stopped flushing its counts")

    def totals(self) -> dict[tuple[int, int], int]:
        with self._cond:
            return dict(self._totals)

    def per_pid(self) -> dict[int, int]:
        return per_pid(self.totals())

    def changes(self) -> tuple[int, int] | None:
        """(the latest flush read, events on the ports' sockets and accepts of the tree up
        to it), or None when not counted (no ports or tracepoints, bpftrace gone) or a
        flush asked for is unanswered (it may have begun before what follows). Flushes
        are numbered in the order asked: one numbered past the first number read here
        began after this call."""
        with self._cond:
            if not self.counts_changes or self.proc is None or self.proc.poll() is not None:
                return None
            if self._answered < self._asked:
                return None
            return self._answered, self._changes + sum(self._totals.values())

    @property
    def measures_queue(self) -> bool:
        return bool(self.ports) and self.queue_note is None and self.proc is not None

    def queue_per_pid(self) -> dict[int, LogHist]:
        """Queue wait per pid, cumulative since start (only pids that accepted a measured
        connection). The three maps are printed one after the other, so a connection
        accepted in between shows in the sum before the buckets (one flush later)."""
        return self._queue()[0]

    def queue_total(self) -> LogHist:
        """Queue wait of the whole tree since start, pids gone since included."""
        return self._queue()[1]

    def _queue(self) -> tuple[dict[int, LogHist], LogHist]:
        with self._cond:
            if self._qcache[0] == self._qseen:
                return self._qcache[1], self._qcache[2]
            out = {}
            for pid, counts in self._qcounts.items():
                buckets = tuple(sorted(counts.items()))
                out[pid] = LogHist(
                    sum(c for _, c in buckets),
                    self._qsum.get(pid, 0),
                    self._qmax.get(pid, 0),
                    buckets,
                )
            self._qcache = (self._qseen, out, loghist.merge(list(out.values())))
            return out, self._qcache[2]

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
