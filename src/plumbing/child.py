"""One way to start, watch and stop a child process: the model's root (servers.supervisor),
an original's watchdog and the original it runs (originals.launch, originals.watchdog),
and the load generator (loadgen.runner) are each a `Child`.

    child = Child([sys.executable, "-m", "mod"], name="mod", env=python_env())
    child.wait(5.0)                   # True once it has exited (woken by the exit itself)
    child.death_message()             # "mod exited (code 1): ValueError: bad knob"
    child.begin_stop()                # SIGTERM to its whole group, at once, from any thread
    child.stop()                      # SIGTERM, SIGKILL after a grace, reaped
    child.close()                     # its pipes and pidfd, once nobody waits on it

What every child gets, and why:
- A session of its own (so a process group of its own): Ctrl-C and the shell's job control
  never reach it (we stop it in order); with no controlling terminal, writing to ours
  never stops it (SIGTTOU); and a child that signals its own group, as httpd does when it
  stops, reaches only its own. Stopping signals the whole group, so workers die at once,
  not when their root gets round to them, and the group never outlives its leader: when
  the leader has exited, the rest of its group is SIGKILLed before the leader is reaped
  (a zombie still holds its pid, so the group id cannot belong to anyone else yet).
- Death with its parent: PR_SET_PDEATHSIG (SIGKILL), set between fork and exec, so it
  holds for any program from its first instruction; a parent already gone makes it leave
  at once. The kernel sends it when the *thread* that started the child exits, not the
  process: start children from a thread that lives as long as they do (the main thread,
  or a lab session's owner thread). That prctl is the one call between fork and exec,
  through a function looked up at import: no import, no lock another thread could hold at
  the fork (what makes preexec_fn unsafe in a threaded process).
- Its stderr (and its stdout, unless sent elsewhere) kept in memory, the latest STDERR_CAP
  bytes: a child that logs in a loop fills neither memory nor a disk, and its last lines,
  what a failure shows, are always there. A thread drains the pipe to EOF, so the child
  never blocks on it.
- One death message: how it died and its last line.
- Its exit awaited through a pidfd and poll(): woken by the exit itself (Popen.wait with a
  timeout sleeps in steps of up to 50 ms), and poll(), not select(), which raises for an fd
  past 1,024, common in a monitor of 1,024 workers.

subprocess.Popen forks and execs; this module adds what Popen has no option for.
"""

from __future__ import annotations

import collections
import functools
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from .process import die_with_parent, readable

STDERR_CAP = 1024 * 1024  # bytes of a child's stderr kept, the latest
STOP_GRACE = 1.0  # seconds from SIGTERM to SIGKILL when the caller names none
MESSAGE_WIDTH = 300  # characters of a stderr line a death message quotes, at most
_CHUNK = 65536

Target = int | IO[bytes] | None  # an fd, a file, subprocess.PIPE/DEVNULL; None: see Child


class StderrTail:
    """The latest bytes of a stream, at most `cap`. Whole chunks go from the front, so
    adding costs the same whatever the flood; between cap - 64 KiB and cap are kept."""

    def __init__(self, cap: int = STDERR_CAP) -> None:
        self.cap = cap
        self.seen = 0  # bytes read in all
        self.dropped = 0  # bytes read and let go
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self._lock:
            self.seen += len(data)
            if len(data) > self.cap:
                self.dropped += len(data) - self.cap
                data = data[-self.cap :]
            self._chunks.append(data)
            self._size += len(data)
            while self._size > self.cap:
                old = self._chunks.popleft()
                self._size -= len(old)
                self.dropped += len(old)

    def kept(self) -> bytes:
        """The bytes kept, from the first whole line once earlier ones were dropped."""
        with self._lock:
            data = b"".join(self._chunks)
            dropped = self.dropped
        if dropped:
            data = data[data.find(b"\n") + 1 :]  # no newline at all: nothing whole is kept
        return data

    def lines(self) -> list[str]:
        """The kept lines that say something (blank ones left out)."""
        text = self.kept().decode(errors="replace")
        return [ln for ln in text.splitlines() if ln.strip()]


def _pump(fd: int, tail: StderrTail) -> None:
    """Drain `fd` into `tail` until EOF (every writer gone), then close it."""
    try:
        while chunk := os.read(fd, _CHUNK):
            tail.add(chunk)
    except OSError:
        pass
    finally:
        os.close(fd)


class Child:
    """A child process, started the one way (see the module docstring).

    `stderr`: None keeps it (capped, for the death message); an fd or a file sends it there
    (a terminal, a test's file). `stdout`: None sends it where stderr goes; PIPE gives
    `child.stdout`, as `stdin=PIPE` gives `child.stdin`. `die_with_parent=False` only for a
    child that learns of our death another way and must clean up first (the watchdog reads
    its stdin to EOF).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        pass_fds: Sequence[int] = (),
        stdin: Target = subprocess.DEVNULL,
        stdout: Target = None,
        stderr: Target = None,
        die_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.tail: StderrTail | None = None
        self._pump: threading.Thread | None = None
        self._lock = threading.Lock()  # signal-then-reap is one step (see `_reap`)
        pipe_r = pipe_w = -1
        if stderr is None:
            self.tail = StderrTail()
            pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
            stderr = pipe_w
        try:
            self._proc: subprocess.Popen[bytes] = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                pass_fds=tuple(pass_fds),
                stdin=stdin,
                stdout=stderr if stdout is None else stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=functools.partial(_die_with, os.getpid()) if die_with_parent else None,
            )
        except BaseException:
            if pipe_w >= 0:
                os.close(pipe_r)
                os.close(pipe_w)
            raise
        if pipe_w >= 0:
            os.close(pipe_w)  # the child's tree holds the only write ends: EOF ends the pump
            self._pump = threading.Thread(
                target=_pump, args=(pipe_r, self.tail), name=f"{name} stderr", daemon=True
            )
            self._pump.start()
        self._pidfd: int | None = None
        self._close_pidfd: Callable[[], object] = lambda: None
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except (AttributeError, OSError):  # no pidfd (Linux < 5.3): waits poll every 10 ms
            pass
        else:
            self._close_pidfd = weakref.finalize(self, os.close, self._pidfd)

    # -- what it is --------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stdin(self) -> IO[bytes] | None:
        return self._proc.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self._proc.stdout

    @property
    def returncode(self) -> int | None:
        """Its exit code once reaped (negative: the signal that killed it), else None."""
        return self._proc.returncode

    def poll(self) -> int | None:
        """Its exit code if it has exited (reaped now, its group SIGKILLed first), else None."""
        if self._proc.returncode is None and self._exited():
            self._reap()
        return self._proc.returncode

    @property
    def running(self) -> bool:
        return self.poll() is None

    def _exited(self) -> bool:
        """Exited (a zombie), without reaping it."""
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        try:
            return os.waitid(os.P_PID, self._proc.pid, flags) is not None
        except ChildProcessError:  # reaped already (by Popen's own wait)
            return True

    def _reap(self) -> None:
        with self._lock:
            if self._proc.returncode is None:
                # the leader is a zombie until reaped: its pid, the group's id, is still ours
                _signal_group(self._proc.pid, signal.SIGKILL)
                self._proc.wait()

    # -- waiting -------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` s (None: as long as it runs) for it to exit; True once it
        has, reaped. Woken by the exit itself, through the pidfd."""
        if self.poll() is not None:
            return True
        if self._pidfd is not None:
            readable(self._pidfd, timeout)
        else:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._exited() and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.01)
        return self.poll() is not None

    # -- what it said ------------------------------------------------------------------
    def stderr_lines(self, settle: float = 1.0) -> list[str]:
        """Its kept stderr lines; once it has exited, after up to `settle` s for the pipe
        to drain (every writer gone), so its last lines are in."""
        if self.tail is None:
            return []
        if self._pump is not None and self.poll() is not None:
            self._pump.join(settle)
        return self.tail.lines()

    def death_message(
        self,
        what: str = "exited",
        *,
        reason: str | None = None,
        prefer: Callable[[str], bool] | None = None,
    ) -> str:
        """One line: `name what (how it died): reason`; the reason, unless given, is its
        last stderr line (the last one `prefer` picks, when it picks any)."""
        code = self.poll()
        if code is None:
            how = ""
        elif code < 0:
            how = f" (killed by {_signal_name(-code)})"
        else:
            how = f" (code {code})"
        if reason is None:
            lines = self.stderr_lines()
            picked = [ln for ln in lines if prefer(ln)] if prefer is not None else []
            reason = (picked or lines or [""])[-1].strip()
        if len(reason) > MESSAGE_WIDTH:
            reason = reason[: MESSAGE_WIDTH - 1] + "…"
        return f"{self.name} {what}{how}" + (f": {reason}" if reason else "")

    # -- stopping ------------------------------------------------------------------------
    def begin_stop(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to its whole group and return at once (from any thread): quitting
        sends first and reaps later, so every process is dying while the caller gets to
        `stop`."""
        with self._lock:
            if self._proc.returncode is None:  # not reaped: the group id is still ours
                _signal_group(self._proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL its whole group at once, and return (`stop` or `wait` reaps it)."""
        self.begin_stop(signal.SIGKILL)

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM to its group, then after up to `grace` s for it to exit (0: at once)
        SIGKILL to whatever of the group is left; reaped. Returns its exit code."""
        if self.poll() is None:
            if grace > 0:
                self.begin_stop(signal.SIGTERM)
                self.wait(grace)
            self.kill()
            self.wait()
        code = self._proc.returncode
        assert code is not None
        return code

    def close(self) -> None:
        """Close its stdin, stdout and pidfd: after `stop`, once nobody reads or waits."""
        for f in (self._proc.stdin, self._proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        if self._pidfd is not None:
            self._close_pidfd()
            self._pidfd = None


def _die_with(parent: int) -> None:
    """Between fork and exec (preexec_fn): SIGKILL when the starting thread exits."""
    die_with_parent(parent)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
