"""Where snapshots come from: a live lab's Watch (a Session's model, an attached server),
a recording, or a list made by a test.

The app asks its source for the next snapshot once per period (from a thread: a live
sample reads /proc for up to 1024 workers) and draws it; the same app therefore runs
live, attached, replays a recording with pause and seek, and draws synthetic snapshots
in tests. The live ones are one kind, `LiveSource`: what it shows is the lab's Watch.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from collections.abc import Sequence

from judging.events import LabEvent, derive_events
from lab.session import Session
from lab.stacks import worker_stack
from lab.watch import Watched
from values.snapshot import SAMPLE_PERIOD_S, Snapshot
from values.stackvalues import StackCapture

HISTORY = 240  # snapshots kept for sparklines (60 s at 4 Hz)
STACK_TIMEOUT_S = 10.0  # `d` gives up on a stack after this long (gdb can take a second)


class ScreenSource:
    """The interface the screens use (a live lab's LiveSource also has its Session)."""

    period = SAMPLE_PERIOD_S
    t0 = 0.0  # event times are shown relative to this (time.monotonic() seconds)
    live_stacks = False  # its workers are processes running now, whose stacks `d` reads

    def next(self) -> Snapshot | None:
        """Blocking: the snapshot to show now (None: nothing to show yet)."""
        raise NotImplementedError

    def history(self) -> tuple[Snapshot, ...]:
        """Recent snapshots, oldest first, ending with the one `next` returned last."""
        raise NotImplementedError

    def events(self) -> list[LabEvent]:
        return []

    def log(self, kind: str, message: str) -> None:
        """Add a line to the event log."""

    def stack(self, pid: int, tid: int) -> StackCapture | None:
        """Blocking (from a worker thread): a worker's stack now; None when this source
        has no live processes (a recording)."""
        return worker_stack(pid, tid, timeout=STACK_TIMEOUT_S) if self.live_stacks else None

    def interrupt(self) -> None:
        """Tell everything this source started to stop, at once (non-blocking)."""

    def close(self) -> None:
        """Stop everything this source started (idempotent)."""


class LiveSource(ScreenSource):
    """A live lab's snapshots: a Session (its keys drive it) or an Attachment."""

    live_stacks = True

    def __init__(self, lab: Watched) -> None:
        self.lab = lab
        self.period = lab.period
        self.t0 = time.monotonic()
        self._history: collections.deque[Snapshot] = collections.deque(maxlen=HISTORY)
        self._closed = False
        self._stopping = False
        self._close_lock = threading.Lock()

    @property
    def session(self) -> Session:
        """The lab's own session (the live lab and the demos; not an attached server)."""
        if not isinstance(self.lab, Session):
            raise TypeError("an attached server has no session")
        return self.lab

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ended(self) -> str | None:
        """Why sampling stopped for good (an attached server exited), else None."""
        return self.lab.watch.ended

    def start(self) -> None:
        """Blocking: start the server and the load."""
        self.lab.start()

    def next(self) -> Snapshot | None:
        if self._closed or self._stopping:
            return None
        snap = self.lab.sample()
        if snap is None:
            return None
        last = self._history[-1] if self._history else None
        if last is not None and _root(last) != _root(snap):
            self._history.clear()  # a new server: its workers have nothing to do with these
        self._history.append(snap)
        return snap

    def history(self) -> tuple[Snapshot, ...]:
        return tuple(self._history)

    def events(self) -> list[LabEvent]:
        return list(self.lab.watch.events)

    def log(self, kind: str, message: str) -> None:
        self.lab.log(kind, message)

    def pids(self) -> list[int]:
        """Every process this source has running: server root, workers, load generator
        (of an attached server: only the load generator, the server is not ours)."""
        return self.lab.pids()

    def interrupt(self) -> None:
        self._stopping = True  # no new samples: the server is going
        self.lab.interrupt()

    def close(self) -> None:
        with self._close_lock:  # held throughout: a second caller returns once it is done
            if self._closed:
                return
            self._closed = True
            self.lab.close()


class ReplaySource(ScreenSource):
    """Snapshots from a recording (or a test), played at their own pace; pause and seek."""

    def __init__(
        self,
        snapshots: Sequence[Snapshot],
        *,
        name: str = "recording",
        start_at: int = 0,
        playing: bool = True,
    ) -> None:
        if not snapshots:
            raise ValueError(f"{name}: no snapshots to show")
        self.snapshots = list(snapshots)
        self.name = name
        n = len(self.snapshots)
        self.pos = start_at % n
        self.playing = playing
        self.t0 = self.snapshots[0].time
        intervals = [s.interval_s for s in self.snapshots if s.interval_s]
        self.period = statistics.median(intervals) if intervals else SAMPLE_PERIOD_S
        self._events = derive_events(self.snapshots)
        self._notes: list[LabEvent] = []
        self._shown = self.pos
        self._lock = threading.Lock()

    @property
    def current(self) -> Snapshot:
        return self.snapshots[self._shown]

    @property
    def position_s(self) -> float:
        return self.current.time - self.t0

    @property
    def length_s(self) -> float:
        return self.snapshots[-1].time - self.t0

    def next(self) -> Snapshot:
        with self._lock:
            self._shown = self.pos
            if self.playing:
                if self.pos + 1 < len(self.snapshots):
                    self.pos += 1
                else:
                    self.playing = False
                    self.log("model", "end of the recording (space plays it again)")
            return self.snapshots[self._shown]

    def history(self) -> tuple[Snapshot, ...]:
        return tuple(self.snapshots[max(0, self._shown - HISTORY + 1) : self._shown + 1])

    def events(self) -> list[LabEvent]:
        now = self.current.time
        return sorted(
            (e for e in [*self._events, *self._notes] if e.time <= now), key=lambda e: e.time
        )

    def log(self, kind: str, message: str) -> None:
        self._notes.append(LabEvent(self.current.time, kind, message))

    # -- controls ---------------------------------------------------------------------
    def toggle(self) -> bool:
        with self._lock:
            if not self.playing and self.pos >= len(self.snapshots) - 1:
                self.pos = 0  # at the end: play again from the start
            self.playing = not self.playing
            return self.playing

    def seek(self, seconds: float) -> None:
        """Move by `seconds` of recorded time (negative: back)."""
        with self._lock:
            target = self.current.time + seconds
            i = self._shown
            if seconds >= 0:
                while i + 1 < len(self.snapshots) and self.snapshots[i + 1].time <= target:
                    i += 1
            else:
                while i > 0 and self.snapshots[i].time > target:
                    i -= 1
            self.pos = self._shown = i

    def step(self, frames: int) -> None:
        with self._lock:
            i = max(0, min(len(self.snapshots) - 1, self._shown + frames))
            self.pos = self._shown = i


def _root(snap: Snapshot) -> int | None:
    return snap.model.root_pid if snap.model is not None else None
