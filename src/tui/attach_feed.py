"""Snapshots of a server serverscope did not start: `serverscope attach` in the TUI.

A Sampler attached by pid or port (sources.sampler) plus the Analyser that adds the
imbalance indexes and diagnoses, sampled from the screen's thread once per period like a
LiveSource, with the lab's own EventDeriver for the event log. Closing it stops only what
serverscope started (the sampler's bpftrace and mod_status poller, the --load generator,
the recorder): the attached server is somebody else's and keeps running.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence

from judging.analyser import Analyser
from lab.autocapture import AutoCapture
from lab.session import EventDeriver, LabEvent
from sources.sampler import Sampler
from values.snapshot import Snapshot

from .source import HISTORY, ScreenSource


class AttachFeed(ScreenSource):
    live_stacks = True

    def __init__(
        self,
        sampler: Sampler,
        analyser: Analyser,
        *,
        period: float = 0.25,
        sinks: Sequence[Callable[[Snapshot], None]] = (),
        on_close: Sequence[Callable[[], object]] = (),
        load_pid: int | None = None,
        autocapture: AutoCapture | None = None,
    ) -> None:
        self.sampler = sampler
        self.analyser = analyser
        self.period = period
        self.t0 = time.monotonic()
        self.sinks = list(sinks)
        self.on_close = list(on_close)  # the load generator's stop, the recorder's close
        self.load_pid = load_pid
        self._history: collections.deque[Snapshot] = collections.deque(maxlen=HISTORY)
        self._deriver = EventDeriver()
        self._events: list[LabEvent] = []
        self._lock = threading.Lock()
        self._closed = False
        self.ended: str | None = None  # why sampling stopped (the server exited)
        self.autocapture = autocapture  # stuck workers' stacks, taken off this thread

    @property
    def closed(self) -> bool:
        return self._closed

    def next(self) -> Snapshot | None:
        with self._lock:
            if self._closed or self.ended:
                return None
            try:
                snap = self.analyser.annotate(self.sampler.sample())
                if self.autocapture is not None:
                    snap = self.autocapture.step(snap)
            except RuntimeError as e:  # the attached server exited
                self.ended = str(e)
                self._events.append(LabEvent(time.monotonic(), "death", f"server gone: {e}"))
                return None
            if not self._history:
                m = snap.model
                what = f"{m.server or m.name} (root pid {m.root_pid})" if m else "server"
                self._events.append(LabEvent(snap.time, "model", f"attached to {what}"))
            self._history.append(snap)
            self._events.extend(self._deriver.step(snap))
        for sink in self.sinks:
            sink(snap)
        return snap

    def history(self) -> tuple[Snapshot, ...]:
        return tuple(self._history)

    def events(self) -> list[LabEvent]:
        return list(self._events)

    def log(self, kind: str, message: str) -> None:
        self._events.append(LabEvent(time.monotonic(), kind, message))

    def pids(self) -> list[int]:
        """Processes of ours: the load generator (bpftrace is the sampler's child)."""
        return [self.load_pid] if self.load_pid is not None else []

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            for stop in self.on_close:
                stop()
        finally:
            if self.autocapture is not None:
                self.autocapture.close()
            self.sampler.close()
