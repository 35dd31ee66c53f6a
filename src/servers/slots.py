"""What a scoreboard slot says, as its readers get it: a worker's state (with Apache's
glyph), kind and role as bytes in shared memory, and the frozen values `Scoreboard.read`
returns (servers.scoreboard holds the memory and its layout)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class State(IntEnum):
    EMPTY = 0  # open slot with no worker
    STARTING = 1
    WAITING = 2  # waiting for a connection
    READING = 3  # reading a request
    WORKING = 4  # handler running (CPU burn or I/O wait)
    WRITING = 5  # sending the reply
    KEEPALIVE = 6  # connection open, waiting for its next request
    CLOSING = 7
    DEAD = 8  # the worker died and was not (yet) replaced

    @property
    def glyph(self) -> str:
        return GLYPHS[self]


# Apache mod_status glyphs; WORKING shares 'W' with WRITING as in Apache, DEAD is ours.
GLYPHS = {
    State.EMPTY: ".",
    State.STARTING: "S",
    State.WAITING: "_",
    State.READING: "R",
    State.WORKING: "W",
    State.WRITING: "W",
    State.KEEPALIVE: "K",
    State.CLOSING: "C",
    State.DEAD: "X",
}

_STATES = tuple(State)  # by value: a tuple index is much cheaper than State(value)


class Kind(IntEnum):
    """What runs in a slot (a byte in shared memory)."""

    PROCESS = 0
    THREAD = 1


class Role(IntEnum):
    """What a slot's occupant does (a byte in shared memory): only workers serve requests
    (values.snapshot.Role carries the same names as strings)."""

    WORKER = 0  # serves requests (a process, a thread, an event loop)
    LISTENER = 1  # accepts and hands connections on (event's listener thread)
    MASTER = 2  # the root of a forking server
    HELPER = 3  # anything else


_KINDS = tuple(Kind)  # by value, as _STATES
_ROLES = tuple(Role)


@dataclass(frozen=True, slots=True)
class SlotInfo:
    index: int
    pid: int
    tid: int
    state: State
    kind: Kind
    listener: int
    generation: int
    accepted: int
    open: int
    requests: int
    bytes_sent: int
    last_change: float
    started: float
    deaths: int
    group: int
    role: Role = Role.WORKER

    @property
    def is_thread(self) -> bool:
        return self.kind == Kind.THREAD


@dataclass(frozen=True, slots=True)
class ModelArea:
    model: str
    root_pid: int
    ready: bool
    expected: int
    gil: bool
    dispatches: int
    spawns: int
    deaths: int
    last_death_pid: int
    last_death_status: int
    last_death_time: float
    high_water: int
    error: str
    handoff_failures: int = 0


@dataclass(frozen=True, slots=True)
class ScoreboardSnapshot:
    time: float
    model: ModelArea
    slots: tuple[SlotInfo, ...]  # every slot ever used, EMPTY ones included

    @property
    def live(self) -> tuple[SlotInfo, ...]:
        return tuple(s for s in self.slots if s.state not in (State.EMPTY, State.DEAD))

    def totals(self) -> dict[str, int]:
        return {
            "accepted": sum(s.accepted for s in self.slots),
            "requests": sum(s.requests for s in self.slots),
            "open": sum(s.open for s in self.slots),
            "bytes_sent": sum(s.bytes_sent for s in self.slots),
        }
