"""A stuck worker and the stack taken of it: immutable values that flow from the lab's
automatic captures into later snapshots (`Snapshot.stuck`), recordings, the event log and
`run --json`.

A worker is stuck when it stays in one request or one state (busy, reading, stopped) for
longer than the `stuck_after` setting (judging.stuck decides, from snapshots alone); each
such episode gets its stack taken at most once, within a budget (lab.autocapture).
Times are time.monotonic() seconds, the clock of `Snapshot.time`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .stackvalues import StackCapture


@dataclass(frozen=True, slots=True)
class Episode:
    """One worker staying in one request or one state: who, in what, since when, for whom."""

    worker: str  # how the worker is named: "worker 3", "pid 1234", "tid 1236"
    pid: int
    tid: int
    generation: int  # with slot and pid/tid, the worker's identity (WorkerSample.key)
    slot: int | None
    what: str  # "request" (one request in progress), else the state it stays in:
    # "reading", "working", "writing", "keepalive", "closing", "stopped"
    state: str  # its WorkerState value when the episode was seen stuck
    since: float  # when it began (monotonic): the request's start, or the state's
    exact: bool  # True: `since` is when it began (scoreboard, mod_status); False: when
    # the monitor first saw it so (an attached worker's state has no age): a lower bound
    request: str | None = None  # its request line, when known (values.current)
    client: str | None = None  # its client, when known: its request's, else (attached)
    # the peer of the one connection it holds (sock_diag)
    blocked: str | None = None  # attach: the system call it was seen in, in words
    # (values.blocked: "in recvfrom on socket fd 9"); None: not read

    @property
    def key(self) -> tuple[int | None, int, int]:
        """The worker's identity, as `WorkerSample.key` gives it."""
        return (self.slot, self.tid, self.generation)  # tid == pid for a process worker


@dataclass(frozen=True, slots=True)
class StuckCapture:
    """The stack of a stuck worker, taken once in its episode."""

    episode: Episode
    time: float  # when the capture began (monotonic)
    stack: StackCapture  # what was read (its `error` says why not, when nothing was)
