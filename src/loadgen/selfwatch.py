"""The load generator watching itself: is the client, not the server, the bottleneck?

A generator that cannot keep up measures itself: its latencies then include the time
responses wait in its own socket buffers for its busy event loop, and its rate is its own
limit, not the server's (locust warns at 90% CPU for the same reason). Two signals, each
over the last WINDOW seconds, read 5 times a second at publish time (never per request):

- CPU: the generator process's CPU time (`time.process_time`, utime + stime of all its
  threads, the same figure as /proc/PID/stat) per wall second; BUSY_CPU (0.9) of a core or
  more means its single event loop is (nearly) never idle. On a shared machine a starved
  generator may not get that core at all, so the event-loop thread's time *waiting for a
  CPU* (/proc/thread-self/schedstat's run-queue wait, in ns) is added: run + wait >= 0.9
  of the wall time means the loop always had work and was running or wanting to run.
- Schedule (open loop only): requests sent in the window against the target rate's due
  count, more than LAG (5%) short. With a connection free at every reading of the window
  the generator itself could not keep its schedule; with every connection busy at some
  reading the server (or too few clients) held the sends back: said so too, as the
  schedule lagging, not the generator (the wait phase then counts the delay: no
  coordinated omission).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass

GENERATOR = "load generator is the bottleneck"  # how the generator's own warning starts
LAGS = "send schedule lags"  # ... and the lag the server's busy connections cause
WINDOW = 1.0  # seconds the figures cover
BUSY_CPU = 0.9  # of one core: the event loop is (nearly) never idle
LAG = 0.05  # open loop: sent this much below the schedule


@dataclass(frozen=True, slots=True)
class SelfReading:
    """One reading; times in seconds."""

    wall: float  # time.monotonic()
    cpu: float  # process CPU seconds (all threads)
    run: float | None  # event-loop thread on a CPU (schedstat), None when unreadable
    wait: float | None  # event-loop thread runnable, waiting for a CPU
    sent: int  # requests sent so far
    idle: int  # connections not busy with a request at this reading


def _schedstat_path() -> str | None:
    # the thread that runs the event loop is the one that creates the watch
    path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    return path if os.path.exists(path) else None


class SelfWatch:
    """Readings of the generator's own load; `figures()` over the last WINDOW seconds."""

    def __init__(self) -> None:
        self.path = _schedstat_path()
        self.start_cpu = time.process_time()
        self.readings: deque[SelfReading] = deque()

    def _schedstat(self) -> tuple[float | None, float | None]:
        if self.path is None:
            return None, None
        try:
            with open(self.path, "rb") as f:
                run_ns, wait_ns, _ = f.read().split()
        except (OSError, ValueError):
            return None, None
        return int(run_ns) / 1e9, int(wait_ns) / 1e9

    def reset(self) -> None:
        """The run starts now: CPU counts from here (the interpreter's start-up is not)."""
        self.start_cpu = time.process_time()
        self.readings.clear()

    def read(self, sent: int, idle: int) -> SelfReading:
        run, wait = self._schedstat()
        r = SelfReading(time.monotonic(), time.process_time(), run, wait, sent, idle)
        self.readings.append(r)
        while len(self.readings) > 2 and r.wall - self.readings[1].wall >= WINDOW:
            self.readings.popleft()
        return r

    @property
    def cpu_s(self) -> float:
        """CPU seconds of the generator process since the run started."""
        return time.process_time() - self.start_cpu

    def figures(self, target_rate: float | None) -> Figures:
        """The generator's figures over the window; each None when the window is too short
        (< half of WINDOW) or unreadable; lag None in a closed loop."""
        if len(self.readings) < 2:
            return Figures()
        a, b = self.readings[0], self.readings[-1]
        span = b.wall - a.wall
        if span < WINDOW / 2:
            return Figures()
        cpu = (b.cpu - a.cpu) / span
        busy = None
        if a.run is not None and b.run is not None and a.wait is not None and b.wait is not None:
            busy = ((b.run - a.run) + (b.wait - a.wait)) / span
        lag = None
        free = False
        if target_rate:
            lag = max(0.0, 1.0 - (b.sent - a.sent) / (target_rate * span))
            free = all(r.idle > 0 for r in self.readings)
        return Figures(cpu, busy, lag, free)


@dataclass(frozen=True, slots=True)
class Figures:
    cpu: float | None = None  # share of one core the process used
    busy: float | None = None  # share of the time its loop ran or waited for a CPU
    lag: float | None = None  # open loop: share of the due sends not sent
    free: bool = False  # open loop: a connection was free at every reading


def verdict(f: Figures, rate: float | None, clients: int) -> str:
    """One line when the generator is the bottleneck or its schedule lags, else ''."""
    if f.cpu is not None and f.cpu >= BUSY_CPU:
        return f"{GENERATOR}: it uses {f.cpu:.0%} of a core"
    if f.busy is not None and f.busy >= BUSY_CPU:
        share = f" (runs {f.cpu:.0%}, waits for a CPU the rest)" if f.cpu is not None else ""
        return f"{GENERATOR}: busy {f.busy:.0%} of the time{share}"
    if f.lag is not None and f.lag > LAG and rate:
        sent = f"sends {1 - f.lag:.0%} of its {rate:,.0f} req/s"
        if f.free:
            return f"{GENERATOR}: {sent} with connections free"
        return (
            f"{LAGS}: {sent}, all {clients:,} connections busy "
            "(the server holds them; the wait counts the delay)"
        )
    return ""
