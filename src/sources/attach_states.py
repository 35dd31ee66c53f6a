"""The state of an attached server's processes and threads, from what can be read of them.

From outside (no scoreboard): /proc T or t -> STOPPED, Z -> DEAD; a single-threaded
process holding one connection and sleeping is blocked on it: KEEPALIVE when that
connection's socket shows a response went out and nothing came since (tcp_info,
readers.tcpinfo), else READING (waiting for the client's bytes: what a pinned prefork
or gunicorn sync worker does; WORKING when its call is a sleep, a lock or a file:
`busy_in`); running -> WORKING; holding none -> WAITING. One holding
several (an event loop: nginx) reads as its connections do when they all agree, else
UNKNOWN. A multi-threaded process holding connections cannot be judged from outside ->
UNKNOWN (its threads do not say which holds what), and so is one whose sockets this user
may not read.

With mod_status (readers.statuspoll) Apache's own glyphs win where fresh: under prefork
one per process; under worker/event one per worker thread (ThreadsPerChild of them in the
process's slot). A child's threads, by thread id (the order they were made in): the main
thread (tid = pid), then worker threads 0..N-1 (Apache's start_threads makes them in slot
order), then the listener; so the glyph of slot j is worker thread j's. The process row
then reads as the busiest of its threads (or WAITING when all wait), so a child with one
thread writing and 24 waiting counts as one busy worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from readers.realtree import TaskSample
from values.blocked import Blocked
from values.snapshot import Hold, WorkerState

# a process's state from its threads' glyphs: the first of these that one of them is in
_PRECEDENCE = (
    WorkerState.WRITING,
    WorkerState.WORKING,
    WorkerState.READING,
    WorkerState.KEEPALIVE,
    WorkerState.CLOSING,
    WorkerState.STARTING,
    WorkerState.WAITING,
)


def process_state(
    letter: str, conns: int | None, threads: int, hold: Hold | None = None
) -> WorkerState:
    """A process's state from outside (see the module docstring); `conns` None: unknown."""
    if letter in ("T", "t"):
        return WorkerState.STOPPED
    if letter in ("Z", "X"):
        return WorkerState.DEAD
    if conns is None:
        return WorkerState.WORKING if letter == "R" else WorkerState.UNKNOWN
    if not conns:
        return WorkerState.WORKING if letter == "R" else WorkerState.WAITING
    if threads > 1:
        return WorkerState.UNKNOWN
    if letter == "R":
        return WorkerState.WORKING
    if hold == Hold.KEEPALIVE:
        return WorkerState.KEEPALIVE
    if conns == 1 or hold is not None:  # blocked on its one connection, or all its
        return WorkerState.READING  # connections wait for request bytes
    return WorkerState.UNKNOWN  # an event loop over connections that differ


# waits that are not a read of a client: a handler's sleep, a lock or condition, a child
NOT_THE_CLIENT = frozenset({"clock_nanosleep", "nanosleep", "futex", "wait4", "waitid"})


def busy_in(state: WorkerState, blocked: Blocked | None) -> WorkerState:
    """READING (asleep, holding one connection) where the call its main thread was read
    in says otherwise: in a sleep, a lock, or a read of a file that is no socket, it is
    in its request's handler (WORKING), not reading its client."""
    if state != WorkerState.READING or blocked is None:
        return state
    if blocked.call in NOT_THE_CLIENT or blocked.socket is False:
        return WorkerState.WORKING
    return state


def thread_state(letter: str) -> WorkerState:
    if letter in ("T", "t"):
        return WorkerState.STOPPED
    if letter in ("Z", "X"):
        return WorkerState.DEAD
    return WorkerState.WORKING if letter == "R" else WorkerState.UNKNOWN


def thread_row_state(letter: str, glyph: WorkerState | None) -> WorkerState:
    """A thread's state: its glyph (mod_status) unless /proc says stopped or dead."""
    state = thread_state(letter)
    if glyph is None or state in (WorkerState.STOPPED, WorkerState.DEAD):
        return state
    return glyph


def of_slot(glyphs: Sequence[WorkerState]) -> WorkerState | None:
    """A process's state from its slot's states (one under prefork): the busiest; None
    when its slot shows no live worker."""
    present = set(glyphs)
    for st in _PRECEDENCE:
        if st in present:
            return st
    return None


def per_thread(
    pid: int, threads: Sequence[TaskSample], glyphs: Sequence[WorkerState]
) -> dict[int, WorkerState]:
    """{tid: state} for a threaded Apache child's worker threads: slot j's glyph is the
    j-th thread after the main one (see the module docstring); {} when the child has
    fewer threads than its slot has worker glyphs (it is starting, or not Apache's
    layout)."""
    workers = sorted(t.tid for t in threads if t.tid != pid)
    n = len(glyphs)
    if len(workers) < n:
        return {}
    return {tid: st for tid, st in zip(workers[:n], glyphs, strict=True) if st != WorkerState.EMPTY}


def any_free(states: Sequence[WorkerState]) -> bool:
    """Whether one of these can take a connection now (waiting, not busy)."""
    return any(st == WorkerState.WAITING for st in states)
