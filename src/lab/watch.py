"""One way to watch a server: read -> annotate -> capture the stuck -> log -> record -> observe.

    watch = Watch(sampler)                       # a model's, an original's, an attached server's
    watch.observers.append(exporter.update)      # --export; a printer for --json, a table...
    watch.run(period, stop)                      # a sample every period until `stop`
    snap = watch.sample()                        # or one at a time (the TUI's pump)

Every server serverscope shows goes through one: a `Session` holds one for its model or
original (over each server it starts in turn), `Attachment` one for a server it did not
start. The sampler measures, the analyser judges (imbalance, diagnoses over its window),
the event deriver writes the event log, the recorder keeps every snapshot, and the
observers (the Prometheus exporter, the command's printer) are handed each one: readers
of the same snapshots, never a second sampler.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from judging.analyser import Analyser
from judging.analysis import DEFAULT_WINDOW_S
from judging.events import EventDeriver, LabEvent
from sources.sampler import DEFAULT_PERIOD, Sampler
from values.recording import RecordingWriter
from values.snapshot import Snapshot

from .autocapture import AutoCapture

__all__ = ["DEFAULT_PERIOD", "EVENTS_KEPT", "Observer", "Watch", "Watched"]

Observer = Callable[[Snapshot], None]
EVENTS_KEPT = 500  # event-log lines kept (the log shows the latest; a day of events is more)


class Watch:
    """A sampler, its analyser, the event log, a recorder and the observers, in that order.

    Thread-safe: `sample` and `close` may come from different threads (the TUI samples
    from a worker thread and closes from another); a close waits for a sample under way.
    """

    def __init__(
        self,
        sampler: Sampler | None = None,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        recorder: RecordingWriter | None = None,
        observers: Iterable[Observer] = (),
        greeting: Callable[[Snapshot], str] | None = None,
        autocapture: AutoCapture | None = None,
    ) -> None:
        self.window_s = window_s
        self.sampler = sampler
        self.analyser = Analyser(window_s)
        self.recorder = recorder
        self.observers: list[Observer] = list(observers)
        self.events: collections.deque[LabEvent] = collections.deque(maxlen=EVENTS_KEPT)
        self.last: Snapshot | None = None  # the latest snapshot taken
        self.ended: str | None = None  # why watching ended (the server is gone), else None
        self._greeting = greeting  # the event-log line for a sampler's first snapshot
        self._greeted = False
        self._deriver = EventDeriver()
        # stuck workers' stacks, taken off the sampling thread; each result rides in a
        # later snapshot (`Snapshot.stuck`)
        self.autocapture = autocapture
        self._lock = threading.RLock()

    def watch(self, sampler: Sampler | None) -> None:
        """Watch through `sampler` from now on (None: nothing to watch). Its judgement
        starts afresh (another server's window is not this one's); the event log, the
        recorder and the observers go on. Closing the old sampler is the caller's."""
        with self._lock:
            self.sampler = sampler
            self.analyser = Analyser(self.window_s)
            self._greeted = False

    def log(self, kind: str, message: str) -> None:
        self.events.append(LabEvent(time.monotonic(), kind, message))

    # -- the pipeline -----------------------------------------------------------------
    def take(self) -> Snapshot | None:
        """Read and judge one snapshot, and log its events; None when nothing is watched.
        Not recorded nor observed: `sample` is this plus `deliver`."""
        with self._lock:
            sampler = self.sampler
            if sampler is None:
                return None
            snap = self.analyser.annotate(sampler.sample())
            if self.autocapture is not None:
                snap = self.autocapture.step(snap)
            if self._greeting is not None and not self._greeted:
                self._greeted = True
                self.events.append(LabEvent(snap.time, "model", self._greeting(snap)))
            self.events.extend(self._deriver.step(snap))
            self.last = snap
            return snap

    def deliver(self, snap: Snapshot) -> None:
        """Record `snap` and hand it to every observer."""
        with self._lock:
            if self.recorder is not None:
                self.recorder.write(snap)
            for observe in self.observers:
                observe(snap)

    def sample(self) -> Snapshot | None:
        """One snapshot read, judged, logged, recorded and observed (None: nothing watched).
        The sampler's errors (the server exited) propagate."""
        with self._lock:
            snap = self.take()
            if snap is not None:
                self.deliver(snap)
            return snap

    def run(self, period: float, stop: threading.Event) -> None:
        """A sample every `period` seconds on a fixed schedule until `stop` is set (Ctrl-C,
        SIGTERM); a late sample moves the schedule on rather than bunching the next ones."""
        next_at = time.monotonic()
        while not stop.is_set():
            self.sample()
            next_at += period
            delay = next_at - time.monotonic()
            if delay <= 0:
                next_at = time.monotonic()
            elif stop.wait(delay):
                return

    def settle(self, span_s: float, period: float) -> Snapshot | None:
        """Sample every `period` until the samples cover `span_s` seconds (a CPU % needs
        an interval, a diagnosis rule its span), then deliver the last one only: a
        one-shot look records and exports the snapshot it shows, not the ones before."""
        snap = self.take()
        covered = 0.0
        while snap is not None and covered < span_s:
            time.sleep(period)
            snap = self.take()
            covered += (snap.interval_s or 0.0) if snap is not None else 0.0
        if snap is not None:
            self.deliver(snap)
        return snap

    def close(self) -> None:
        """Close the sampler (its bpftrace child, its /proc descriptors) and the recorder;
        waits for a sample under way."""
        with self._lock:
            sampler, self.sampler = self.sampler, None
            recorder, self.recorder = self.recorder, None
            capture, self.autocapture = self.autocapture, None
        try:
            if capture is not None:
                capture.close()
            if sampler is not None:
                sampler.close()
        finally:
            if recorder is not None:
                recorder.close()


class Watched(Protocol):
    """What a view drives live, whoever started the server: a `Session` (a model or an
    original of ours) or an `Attachment` (somebody else's server)."""

    watch: Watch
    period: float

    def start(self) -> None: ...  # blocking: whatever must run before the first sample
    def sample(self) -> Snapshot | None: ...
    def log(self, kind: str, message: str) -> None: ...
    def pids(self) -> list[int]: ...  # the processes of ours it has running
    def interrupt(self) -> None: ...  # send the stop signals now, from any thread
    def close(self) -> None: ...  # stop everything of ours (idempotent)
