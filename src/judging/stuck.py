"""Who is stuck, from snapshots alone, and where the stuck workers stand.

A worker is stuck when it stays in one request, or in one busy or stopped state (reading,
working, writing, keep-alive, closing, stopped), longer than `stuck_after` seconds. How
long comes from the snapshot where the server says it (the scoreboard's `state_age_s`,
a request's `began`), else from how long the monitor has seen it so (an attached worker:
its state has no age), which is a lower bound.

    watch = StuckWatch(stuck_after=2.0)
    for snap in snapshots:
        new = watch.step(snap)          # episodes that became stuck in this snapshot
        watch.captured(snap.stuck)      # captures that came back, for `diagnosis()`
    budget = Budget(per_minute=30)      # which of them get a capture: each worker at most
    budget.take(episode.key, now)       # once per PER_WORKER_S, all at most 30 a minute

Everything here is pure (no clock, no I/O): the lab's automatic capture (lab.autocapture)
runs it on its snapshots and takes the stacks elsewhere, off the sampling thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from plumbing.settings import Setting, by_name
from values.findings import Diagnosis, Severity
from values.snapshot import (
    BUSY_STATES,
    Snapshot,
    WorkerSample,
    WorkerState,
    is_stopped,
)
from values.stackvalues import StackCapture, ThreadStack
from values.stuck import Episode, StuckCapture

RULE = "stuck"
PER_WORKER_S = 60.0  # one worker's stack is taken at most once in this many seconds
WHERE_FRAMES = 2  # frames that say where a worker stands (innermost first)
GIL_WAIT = "take_gil"  # CPython's function a thread waits for the GIL in (native frames)
# without CPython's symbols take_gil is not named: its condition wait sits right under the
# Python frame that waits (seen with py-spy --native on CPython 3.11: pthread_cond_timedwait
# under `spin`); a lock's wait goes through PyThread_acquire_lock or a semaphore instead
GIL_CONDITION_WAITS = frozenset({GIL_WAIT, "pthread_cond_timedwait", "pthread_cond_wait"})


def waits_for_gil(t: ThreadStack) -> bool:
    """The thread waits for the GIL: its native frames above its innermost Python frame
    (innermost first) are CPython's GIL wait, not a lock's."""
    above: list[str] = []
    for f in t.frames:
        if not f.native:
            break
        above.append(f.function)
    else:
        return False  # no Python frame under them: not a Python thread waiting
    if any("acquire_lock" in name or name.startswith("sem_") for name in above):
        return False
    return any(name in GIL_CONDITION_WAITS for name in above)


# the automatic captures' settings, declared once: the command line (commands.common
# add_settings) and docs read these rows
STUCK_OPTIONS: tuple[Setting, ...] = (
    Setting(
        "stuck_after",
        float,
        "a worker in one request or one busy or stopped state longer than this is stuck: "
        "its stack is taken once",
        default=2.0,
        low=0,
        above=True,
        high=3600,
        unit="s",
    ),
    Setting(
        "capture_budget",
        int,
        f"automatic stack captures a minute, in all (a worker at most once in "
        f"{PER_WORKER_S:g} s); 0: none",
        default=30,
        low=0,
        high=600,
        metavar="N",
    ),
)
STUCK_OPTION = by_name(STUCK_OPTIONS)


@dataclass(frozen=True, slots=True)
class StuckSettings:
    stuck_after: float = 2.0  # seconds
    capture_budget: int = 30  # captures a minute, in all; 0: none

    @property
    def on(self) -> bool:
        return self.capture_budget > 0


# -- who is stuck ---------------------------------------------------------------------------


def _what(w: WorkerSample, now: float) -> tuple[str, float | None] | None:
    """What a worker stays in and since when (None: unknown), or None when it is free."""
    if not w.is_worker or not w.alive:
        return None
    age = w.state_age_s
    if is_stopped(w):
        return "stopped", (now - age if age is not None else None)
    b = w.blocked
    if b is not None and b.multiplexes:
        # parked in an event loop's wait (epoll_wait, poll on many fds), every other thread
        # idle: it waits for whichever client speaks next, however many it holds (seen:
        # nginx holding one idle keep-alive client read as stuck in keep-alive)
        return None
    if (b is None or b.others_busy) and (w.connections or 0) > 1 and w.state != WorkerState.WORKING:
        # no decisive evidence of its wait: a worker holding several connections at once
        # waits on all of them (seen: an attached many_accepts worker holding 20 idle
        # clients read as stuck); one blocked in a read, a lock or a sleep is not exempt
        return None
    c = w.current
    if c is not None and c.requests and c.began is not None:
        return "request", c.began
    if w.state in BUSY_STATES:
        return w.state.value, (now - age if age is not None else None)
    return None


def _moved(w: WorkerSample, now: float, interval_s: float | None) -> float | None:
    """When an attached worker last showed from outside that it moved on: a response
    sent on one of its connections (tcp_info), an accept in the last interval (its loop
    ran), now when it is parked in its event loop's wait; None: none seen. Bytes coming
    in prove nothing (a client trickling a request keeps its reader stuck)."""
    b = w.blocked
    if b is not None and b.multiplexes:
        return now
    times = [now - (interval_s or 0.0)] if w.accepts else []
    if w.peers is not None:
        times += [p.last_sent for p in w.peers.listed if p.bytes_sent and p.last_sent]
    return max(times, default=None)


@dataclass(slots=True)
class _Open:
    what: str
    since: float
    exact: bool
    episode: Episode | None = None  # set once it is stuck
    seen: float = 0.0  # when a snapshot last showed it so


class StuckWatch:
    """Stuck episodes, folded over successive snapshots of one server."""

    SAME_S = 0.5  # a state's start read again within this is the same state (sampling jitter)
    # an attached worker's state is read from outside (its socket's tcp_info, every 0.5 s):
    # one sample that reads it otherwise does not end its episode
    GRACE_S = 1.0

    def __init__(self, stuck_after: float = 2.0) -> None:
        self.stuck_after = stuck_after
        self.open: dict[tuple[int | None, int, int], _Open] = {}
        # each worker's latest capture, for PER_WORKER_S: its episode's, or its previous
        # episode's while the budget refuses it another one
        self.captures: dict[tuple[int | None, int, int], StuckCapture] = {}
        self.now = 0.0

    def step(self, snap: Snapshot) -> list[Episode]:
        """Episodes that became stuck with `snap` (each once); forgets the ended ones."""
        now, new = snap.time, []
        seen: dict[tuple[int | None, int, int], _Open] = {}
        moved: dict[tuple[int | None, int, int], float] = {}
        for w in snap.workers:
            got = _what(w, now)
            at = _moved(w, now, snap.interval_s)
            if at is not None:
                moved[w.key] = at
            if got is None:
                continue
            what, since = got
            old = self.open.get(w.key)
            same = old is not None and old.what == what
            if same and old is not None and since is not None and old.exact:
                same = abs(old.since - since) <= self.SAME_S
            if same and old is not None:
                cur = old
            else:
                cur = _Open(what, since if since is not None else now, since is not None)
            if not cur.exact and at is not None and at > cur.since:
                # read from outside, a state has no start: it began after the worker moved
                cur = _Open(what, at, False)
            cur.seen = now
            seen[w.key] = cur
            if cur.episode is None and now - cur.since >= self.stuck_after:
                cur.episode = _episode(w, cur)
                new.append(cur.episode)
        here = {w.key for w in snap.workers}
        for key, o in self.open.items():
            if (
                key in here
                and key not in seen
                and not o.exact
                and now - o.seen <= self.GRACE_S
                and moved.get(key, o.since) <= o.since
            ):
                seen[key] = o
        self.captures = {
            k: c for k, c in self.captures.items() if k in here and now - c.time <= PER_WORKER_S
        }
        self.open, self.now = seen, now
        return new

    def captured(self, captures: Iterable[StuckCapture]) -> None:
        """Captures that came back (`Snapshot.stuck`), kept per worker."""
        for c in captures:
            self.captures[c.episode.key] = c

    def stuck_now(self) -> list[Episode]:
        return [o.episode for o in self.open.values() if o.episode is not None]

    def diagnosis(self) -> Diagnosis | None:
        """Where the workers stuck now stand: each one's capture of this episode, else
        of its previous one in the same request-or-state, said so (the budget takes a
        worker's stack at most once in PER_WORKER_S)."""
        used, earlier = [], 0
        for key, o in self.open.items():
            c = self.captures.get(key)
            if o.episode is None or c is None:
                continue
            if c.episode == o.episode:
                used.append(c)
            elif c.episode.what == o.what:
                used.append(c)
                earlier += 1
        return grouped(used, len(self.stuck_now()), earlier=earlier)


def _episode(w: WorkerSample, cur: _Open) -> Episode:
    c = w.current
    in_request = c is not None and bool(c.requests)
    client = c.client if c is not None and in_request else None
    p = w.peers  # attached: the one connection it holds, read from its socket
    if client is None and p is not None and p.total == 1 and p.listed:
        client = p.listed[0].client
    return Episode(
        worker=w.label,
        pid=w.pid,
        tid=w.tid,
        generation=w.generation,
        slot=w.slot,
        what=cur.what,
        state=w.state.value,
        since=cur.since,
        exact=cur.exact,
        request=c.request if c is not None and in_request else None,
        client=client,
        blocked=w.blocked.words() if w.blocked is not None else None,
    )


# -- the budget -----------------------------------------------------------------------------


class Budget:
    """Captures a minute in all (a bucket of `per_minute` that refills at that rate, so a
    starved pool's first `per_minute` come at once, then one every 60/per_minute s), and
    each worker at most once in `per_worker_s`. Told the time: no clock of its own."""

    def __init__(self, per_minute: int, per_worker_s: float = PER_WORKER_S) -> None:
        self.per_minute = per_minute
        self.per_worker_s = per_worker_s
        self.tokens = float(per_minute)
        self.last: float | None = None
        self.taken: dict[tuple[int | None, int, int], float] = {}
        self.refused = 0  # episodes not captured for the budget, in all

    def take(self, key: tuple[int | None, int, int], now: float) -> bool:
        if self.last is not None:
            self.tokens = min(
                float(self.per_minute), self.tokens + (now - self.last) * self.per_minute / 60
            )
        self.last = now
        before = self.taken.get(key)
        if self.tokens < 1 or (before is not None and now - before < self.per_worker_s):
            self.refused += 1
            return False
        self.tokens -= 1
        self.taken[key] = now
        if len(self.taken) > 4 * 1024:  # workers come and go: forget the long-past ones
            self.taken = {k: t for k, t in self.taken.items() if now - t < self.per_worker_s}
        return True


# -- where they stand -----------------------------------------------------------------------


def thread_of(e: Episode, cap: StackCapture) -> ThreadStack | None:
    """The thread of the capture that is the worker: its own tid, else the one active
    thread, else the first."""
    mine = [t for t in cap.threads if t.tid == e.tid]
    if mine:
        return mine[0]
    active = [t for t in cap.threads if t.state and not t.state.startswith("idle")]
    if len(active) == 1:
        return active[0]
    return cap.threads[0] if cap.threads else None


def _frame_text(function: str, file: str | None, line: int | None) -> str:
    where = ""
    if file:
        base = file.rsplit("/", 1)[-1]
        where = f" ({base}:{line})" if line else f" ({base})"
    return f"`{function}`{where}"


def signature(t: ThreadStack) -> tuple[tuple[str, str | None, int | None], ...]:
    """Where a thread stands: its innermost WHERE_FRAMES frames (what is grouped), leaving
    out native frames known by their address only (`0x7ff4...` says nothing)."""
    named = [f for f in t.frames if not (f.native and f.function.startswith("0x"))] or t.frames
    return tuple((f.function, f.file, f.line) for f in named[:WHERE_FRAMES])


def where(sig: Sequence[tuple[str, str | None, int | None]]) -> str:
    """`\\`time_sleep\\` <- \\`app\\` (wsgiapp.py:7)`: innermost first."""
    return " <- ".join(_frame_text(*f) for f in sig) if sig else "no frames"


def stands(c: StuckCapture) -> str:
    """Where one captured worker stands, in a line (or why it is not known)."""
    if not c.stack.ok:
        return f"no stack: {c.stack.error or 'no thread read'}"
    t = thread_of(c.episode, c.stack)
    return where(signature(t)) if t is not None else "no thread read"


def doing_words(what: str) -> str:
    """An episode's `what` in words: `in one request`, `in keep-alive`, `reading`."""
    return {"request": "in one request", "keepalive": "in keep-alive"}.get(what, what)


def grouped(captures: Sequence[StuckCapture], stuck: int, *, earlier: int = 0) -> Diagnosis | None:
    """The diagnosis: where most stuck workers stand, identical stacks counted:
    `stuck: 7 of 8 stuck workers (in one request) are in \\`app\\` (wsgiapp.py:7) <- ...`."""
    groups: Counter[tuple[str, tuple[tuple[str, str | None, int | None], ...]]] = Counter()
    gil = 0  # threads whose native frames show them waiting for the GIL
    for c in captures:
        t = thread_of(c.episode, c.stack) if c.stack.ok else None
        if t is None or not t.frames:
            continue
        groups[(c.episode.what, signature(t))] += 1
        gil += waits_for_gil(t)
    if not groups:
        return None
    (what, sig), n = groups.most_common(1)[0]
    read = sum(groups.values())
    doing = doing_words(what)
    others = f"; {len(groups) - 1} other stack{'s' * (len(groups) > 2)}" if len(groups) > 1 else ""
    held = f"; {gil} of {read} wait for the GIL" if gil else ""
    more = (
        f" (stacks of {read} of {stuck} stuck: the others still being read or past the budget)"
        if stuck > read
        else ""
    )
    if earlier:
        more += f" ({earlier} of the stacks from the worker's previous episode)"
    message = (
        f"stuck: {n} of {read} stuck workers ({doing}) are in {where(sig)}{others}{held}{more}"
    )

    return Diagnosis(RULE, Severity.WARNING, message)


def event_line(c: StuckCapture, now: float) -> str:
    """The event log's line for a capture: who, in what, for how long, for whom, where."""
    e = c.episode
    age = now - e.since
    how_long = f"{age:.1f} s" if e.exact else f"at least {age:.1f} s"
    doing = doing_words(e.what)
    req = f" {e.request!r}" if e.request else ""
    client = f" from {e.client}" if e.client else ""
    who = e.worker if e.worker == f"pid {e.pid}" else f"{e.worker} (pid {e.pid})"
    call = f" ({e.blocked})" if e.blocked else ""
    return f"{who} stuck {doing} {how_long}{call}{req}{client}: {stands(c)}"


__all__ = [
    "RULE",
    "STUCK_OPTION",
    "STUCK_OPTIONS",
    "Budget",
    "StuckSettings",
    "StuckWatch",
    "doing_words",
    "event_line",
    "grouped",
    "stands",
]
