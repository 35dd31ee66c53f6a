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

A warning needs sustained evidence: live, a verdict is raised once it has held at every
reading for SUSTAIN_S (`Sustained`), and cleared at the first reading without it. At the
end of the load (its drain, and the final figures) the verdict is the run's own: the
generator's CPU, its loop's run + wait, and its sends against the schedule's due count
over the whole time it issued requests (`SelfWatch.run_figures`). After 5 minutes of
`steady` (60,000 requests, all sent on time) one second's "sends 95% of its 200 req/s"
stayed on the last frame: the last flag raised, at any moment, was the run's verdict.
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
SUSTAIN_S = 2.0  # a verdict held at every reading this long before it is raised live
# (readings over 1 s windows: 3 s of evidence; one second's 95% is not)
FREE_SHARE = 0.9  # over the run: a connection was free at this share of the readings


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
        self.first: SelfReading | None = None  # the run's first reading
        self.with_free = 0  # readings of the run with a connection free
        self.count = 0  # readings of the run

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
        self.first = None
        self.with_free = self.count = 0

    def read(self, sent: int, idle: int) -> SelfReading:
        run, wait = self._schedstat()
        r = SelfReading(time.monotonic(), time.process_time(), run, wait, sent, idle)
        self.add(r)
        return r

    def add(self, r: SelfReading) -> None:
        """Keep reading `r` (the window's, and the run's tallies)."""
        if self.first is None:
            self.first = r
        self.count += 1
        self.with_free += r.idle > 0
        self.readings.append(r)
        while len(self.readings) > 2 and r.wall - self.readings[1].wall >= WINDOW:
            self.readings.popleft()

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

    def run_figures(self, target_rate: float | None, due: int | None) -> Figures:
        """The generator's figures over the whole run so far (from its first reading to
        its latest): CPU and run + wait per wall second; open loop: the sends against
        `due`, the requests the schedule made due (paused time makes none); free when a
        connection was free at FREE_SHARE of the readings. None where unknown."""
        a = self.first
        b = self.readings[-1] if self.readings else None
        if a is None or b is None or b.wall - a.wall < WINDOW / 2:
            return Figures()
        span = b.wall - a.wall
        cpu = (b.cpu - a.cpu) / span
        busy = None
        if a.run is not None and b.run is not None and a.wait is not None and b.wait is not None:
            busy = ((b.run - a.run) + (b.wait - a.wait)) / span
        lag = None
        if target_rate and due:
            lag = max(0.0, 1.0 - b.sent / due)
        free = self.count > 0 and self.with_free >= FREE_SHARE * self.count
        return Figures(cpu, busy, lag, free)


class Sustained:
    """The live warning: a verdict raised once the same kind (the generator, or the
    schedule) has held at every reading for SUSTAIN_S seconds; cleared at the first
    reading without it (a second's jitter is not evidence, and gone evidence is gone)."""

    def __init__(self, sustain_s: float = SUSTAIN_S) -> None:
        self.sustain_s = sustain_s
        self.since: float | None = None
        self.kind = ""

    def update(self, now: float, flag: str) -> str:
        """The warning to show at `now`, given this reading's verdict `flag` ('' none)."""
        if not flag:
            self.since, self.kind = None, ""
            return ""
        kind = flag.split(":", 1)[0]
        if self.since is None or kind != self.kind:
            self.since, self.kind = now, kind
        return flag if now - self.since >= self.sustain_s else ""


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
