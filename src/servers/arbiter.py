"""The master loop shared by every model that forks workers: reap, respawn, manage.

Shaped like gunicorn's arbiter: signals only write a byte to a self-pipe
(`signal.set_wakeup_fd`), and one loop waits on that pipe (plus any sockets the master
serves itself, such as cluster's listening socket), reaps dead children, records the
deaths on the scoreboard, respawns them, and calls the model's `manage` hook on a tick.

A child is known by its index. For process models the index is the child's one slot; a
model whose children own several slots (one per thread: `worker`, `event`) passes
`slots_of(index)`, and reserving, recording a death and freeing cover the whole group.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import time
import traceback
from collections.abc import Callable, Sequence

from plumbing.process import die_with_parent, drain, readable

from .root import RootContext

RESPAWN_BACKOFF = 1.0  # a worker that dies within this of its start waits this long
SHUTDOWN_GRACE = 3.0


class Arbiter:
    def __init__(
        self,
        ctx: RootContext,
        worker_main: Callable[[int], object],
        *,
        tick: float = 1.0,
        manage: Callable[[], None] | None = None,
        before_fork: Callable[[int], None] | None = None,
        after_fork: Callable[[int], None] | None = None,
        slots_of: Callable[[int], Sequence[int]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.board = ctx.scoreboard
        self.worker_main = worker_main  # runs in the child with its slot index
        self.tick = tick
        self.manage = manage
        self.before_fork = before_fork  # in the master, before each fork (e.g. make a channel)
        self.after_fork = after_fork  # in the master, after each fork
        self.slots_of = slots_of  # child index -> its scoreboard slots (default: the index)
        self.children: dict[int, int] = {}  # pid -> slot (the child index)
        self.retiring: set[int] = set()  # pids stopped on purpose (pool shrinking)
        self.started_at: dict[int, float] = {}  # slot -> time of its latest spawn
        self.pending: list[tuple[float, int]] = []  # (due, slot) respawns delayed by backoff
        self.selector = selectors.DefaultSelector()
        self._signals: list[int] = []
        self._pipe: tuple[int, int] | None = None
        self.master_pid = os.getpid()

    # -- workers -----------------------------------------------------------------------
    def group(self, index: int) -> Sequence[int]:
        """The scoreboard slots of child `index`."""
        return self.slots_of(index) if self.slots_of else (index,)

    def spawn(self, slot: int) -> int:
        for s in self.group(slot):
            self.board.reserve(s)
        if self.before_fork:
            self.before_fork(slot)
        pid = os.fork()
        if pid == 0:
            self._child(slot)
        self.children[pid] = slot
        self.started_at[slot] = time.monotonic()
        self.board.header.spawns += 1
        if self.after_fork:
            self.after_fork(slot)
        return pid

    def _child(self, slot: int) -> None:
        code = 1
        try:
            die_with_parent(self.master_pid)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if self._pipe:
                os.close(self._pipe[0])
                os.close(self._pipe[1])
            self.selector.close()
            self.worker_main(slot)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def start(self, nworkers: int) -> None:
        """Spawn the initial workers into slots 0..n-1 and tell the supervisor to expect them."""
        self.ctx.expect(max((s + 1 for i in range(nworkers) for s in self.group(i)), default=0))
        for slot in range(nworkers):
            self.spawn(slot)
        self.ctx.ready()

    def retire(self, pid: int, sig: int = signal.SIGTERM) -> None:
        """Stop a worker on purpose: its slot becomes free, not dead. A model whose workers
        finish their connection first (a graceful stop) sends the signal they handle."""
        self.retiring.add(pid)
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def slot_pids(self) -> dict[int, int]:
        return {slot: pid for pid, slot in self.children.items()}

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            if pid in self.retiring:
                self.retiring.discard(pid)
                for s in self.group(slot):
                    self.board.mark_empty(s)
                continue
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            for i, s in enumerate(self.group(slot)):  # one death per process in the model area
                self.board.mark_dead(s, code, record=i == 0)
            lived = time.monotonic() - self.started_at.get(slot, 0.0)
            due = time.monotonic() + (RESPAWN_BACKOFF if lived < RESPAWN_BACKOFF else 0.0)
            self.pending.append((due, slot))

    # -- the loop ----------------------------------------------------------------------
    def add_reader(self, fileobj: socket.socket, callback: Callable[[], None]) -> None:
        self.selector.register(fileobj, selectors.EVENT_READ, callback)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._pipe = (r, w)
        signal.set_wakeup_fd(w)
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, self._on_signal)
        self.selector.register(r, selectors.EVENT_READ, None)
        next_tick = time.monotonic() + self.tick
        while True:
            now = time.monotonic()
            due = min([next_tick, *(d for d, _ in self.pending)])
            for key, _ in self.selector.select(max(0.0, due - now)):
                if key.data is None:
                    drain(r)
                else:
                    key.data()
            if any(s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT) for s in self._signals):
                return self.shutdown()
            self._signals.clear()
            self.reap()
            now = time.monotonic()
            if self.pending:
                ready = [s for d, s in self.pending if d <= now]
                self.pending = [(d, s) for d, s in self.pending if d > now]
                for slot in ready:
                    self.spawn(slot)
            if now >= next_tick:
                next_tick = now + self.tick
                if self.manage:
                    self.manage()

    def shutdown(self) -> int:
        """SIGTERM every child (the supervisor signals the whole group too), reap them as
        they exit, woken by SIGCHLD on the self-pipe (a 10 ms sleep-and-poll added up to
        0.1 s to a quit with 250 workers); SIGKILL what is left after SHUTDOWN_GRACE.

        The SIGTERM is sent again every 50 ms to the children still there: one forked a
        moment before runs our handler until it resets its own, and that handler only
        notes the signal (seen: prefork growing its pool under `overload` kept a child
        through the whole grace, and quitting took 1.03 s, twice)."""
        self._terminate_children()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self.children:
            try:
                while self.children:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    self.children.pop(pid, None)
            except ChildProcessError:
                break
            left = deadline - time.monotonic()
            if not self.children or left <= 0:
                break
            if self._pipe is None:
                time.sleep(min(left, 0.01))
                continue
            r = self._pipe[0]
            if readable(r, min(left, 0.05)):  # SIGCHLD, or another signal
                drain(r)
            else:
                self._terminate_children()
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.children.clear()
        return 0

    def _terminate_children(self) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
