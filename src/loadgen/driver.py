"""The generator's event loop: virtual users, open-loop pacing, recording, live figures.

Engine-agnostic: an engine only sends a request on a user's connection (engine.py).

Closed loop: each user sends, waits for the response, thinks, sends again.
Open loop (wrk2 style): a pacer emits "tickets" at the intended send times of a constant
rate, t0 + k/rate, into one queue shared by all users; a free user takes the oldest ticket
and sends it. When every user is busy, tickets wait in the queue, so a stalled server
shows as latency (measured from the ticket's intended time), never as fewer requests
(no coordinated omission).

Waiting clients. A latency histogram of completed requests is blind to the requests that
never complete: 12 s into prefork starvation it read p99 18.6 ms with 280 clients stuck.
So the driver keeps, per busy user, the intended send time of its request in flight
(`Driver.busy`: a dict store and a del per request, ~20 ns more than the set it replaced),
and every snapshot reports: `in_flight`, `oldest_wait_ms` (age of the oldest request in
flight, from its intended send time), and `latency_all_ms`, the distribution of completed
requests PLUS every request still waiting counted once at its current age (now minus its
intended send time), and, in an open loop, every due ticket not yet sent at its age.
What this is exactly: wrk2 measures each *completed* request from its intended send time
(we do too: `latency_ms`); HdrHistogram's corrected mode (`recordValueWithExpectedInterval`)
back-fills the samples a stalled closed loop did not send. Neither counts a request that
has not finished; we add those at their age so far, a lower bound of their final latency,
so `latency_all_ms` percentiles are lower bounds too, but a stuck client can no longer
hide. It is built at publish time (5 a second), never on the per-request path: a copy of
the histogram plus one increment per waiting request (at most 20,000, sampled with
weights beyond that; unsent tickets are taken as evenly spaced between the oldest and
newest due time, exact at a constant rate).

At the end, requests still in flight after the drain are cut: the final figures count
them (`in_flight`, their ages at the cut), so that sent = completed + errors + in flight.

Phases. Each user takes `start` as it starts a request (= the intended time in
a closed loop; later in an open loop when it waited for a free connection), the engine
says when the connection was ready and when the response's first and last bytes came,
and the driver's own clock closes the request: Recorder.ok splits the latency into wait,
connect, ttfb, read and resume (stats.ClientPhases), adding up exactly. The generator's
self-watch (selfwatch.py) is read at publish time only, 5 times a second.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable

from .engine import Engine, RequestError, Target
from .engines import make_engine
from .histogram import Histogram
from .levels import LoadLevel
from .recorder import Recorder
from .result import LoadResult
from .selfwatch import Figures, SelfWatch, Sustained, verdict
from .stats import LoadStats
from .waiting import waiting_histogram

_monotonic = time.monotonic
CONNECT_BACKOFF = 0.05  # closed loop: pause after a failed connect, not to spin on refusals
DRAIN = 2.0  # at the end, seconds to let requests in flight finish
LIVE_SERIES = 600  # seconds of the per-second series carried by live stats
PUBLISH_EVERY = 0.2


class Driver:
    def __init__(
        self,
        target: Target,
        level: LoadLevel,
        engine: str,
        publish: Callable[[str, object], None],
    ) -> None:
        self.target = target
        self.level = level
        self.engine_name = engine
        self.publish = publish
        self.t0 = _monotonic()
        self.rec = Recorder(self.t0)
        self.engine: Engine | None = None
        self.users: dict[int, asyncio.Task[None]] = {}
        self.busy: dict[int, float] = {}  # user -> intended send time of its request in flight
        self.cut: tuple[float, dict[int, float], tuple[float, ...]] | None = None  # at the end
        self.tickets: deque[float] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.paused = False
        self.stopping = False
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.done = asyncio.Event()  # set to end the run early (stop, or request cap)
        self.end_time: float | None = None
        self.rng = random.Random()
        self.gen = 0  # bumped by every control change: ends the engine's request chains
        self.watch = SelfWatch()
        self.warning = Sustained()  # the live warning: a verdict held for a while
        self.readings = 0  # self-watch readings taken while running
        self.flagged = 0  # of which found the generator (or the schedule) behind
        self.due = 0  # open loop: sends the schedule made due (tickets issued)
        self.run_flag: str | None = None  # the run's verdict, once its time is up

    # -- control (called on the loop, from the control reader) -----------------------------
    def set_level(self, level: LoadLevel) -> None:
        self.gen += 1
        old, self.level = self.level, level
        assert self.engine is not None
        self.engine.set_level(level)
        if level.clients > old.clients:
            for i in range(old.clients, level.clients):
                self._spawn(i, 0.0)
        elif level.clients < old.clients:
            for i, task in list(self.users.items()):
                if i >= level.clients and i not in self.busy:
                    task.cancel()
        if level.rate is None:
            self._wake_all()  # users waiting for tickets go back to the closed loop

    def pause(self) -> None:
        self.gen += 1
        if not self.paused:
            self.paused = True
            self.resumed.clear()
            self.tickets.clear()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.resumed.set()

    def stop(self) -> None:
        self.gen += 1
        self.done.set()

    # -- users ---------------------------------------------------------------------------
    def _spawn(self, i: int, delay: float) -> None:
        task = self.users.get(i)
        if task is None or task.done():
            self.users[i] = asyncio.create_task(self._user(i, delay))

    def _wake_all(self) -> None:
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)

    async def _ticket(self) -> float | None:
        """The oldest due ticket (intended send time), or None to re-check the level."""
        while not self.tickets:
            w = asyncio.get_running_loop().create_future()
            self.waiters.append(w)
            await w
            if self.level.rate is None:
                return None
        return self.tickets.popleft()

    async def _user(self, i: int, delay: float) -> None:
        # one loop on purpose: a virtual user's request loop is the generator's hot path
        assert self.engine is not None
        rec = self.rec
        client = self.engine.client()
        busy = self.busy
        chain = getattr(client, "burst", None)  # the fast engine's chained closed loop
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            while not self.stopping:
                lvl = self.level
                if i >= lvl.clients:
                    break
                if self.paused:
                    await self.resumed.wait()
                    continue
                if lvl.rate is not None:
                    intended = await self._ticket()
                    if intended is None or self.stopping:
                        continue
                    start = _monotonic()
                else:
                    cap = lvl.requests
                    if cap is not None and rec.sent >= cap:
                        break
                    if chain is not None and cap is None and lvl.keepalive and not lvl.think_ms:
                        burst = chain(self, i)  # None: no open connection yet
                        if burst is not None:
                            try:
                                await burst
                            except RequestError:
                                pass  # counted by the chain
                            continue
                    intended = start = _monotonic()
                rec.sent += 1
                rec.in_flight += 1
                busy[i] = intended
                try:
                    status = await client.request(start)
                except RequestError as err:
                    rec.error(err.kind)
                    if err.connect and self.level.rate is None:
                        await asyncio.sleep(CONNECT_BACKOFF)
                    continue
                finally:
                    rec.in_flight -= 1
                    del busy[i]
                rec.ok(
                    status,
                    intended,
                    client.t_start,  # = start, unless sent again on a new connection
                    client.t_conn,
                    client.t_first,
                    client.t_last,
                    _monotonic(),
                )
                think = lvl.think_ms
                if think:
                    if lvl.think_exp:
                        think = self.rng.expovariate(1.0 / think)
                    await asyncio.sleep(think / 1000.0)
        finally:
            await client.close()

    # -- pacing --------------------------------------------------------------------------
    async def _pacer(self) -> None:
        next_t: float | None = None
        rate: float | None = None
        issued = 0
        while not self.stopping:
            lvl = self.level
            now = _monotonic()
            if lvl.rate is None or self.paused:
                next_t, rate = None, None
                await asyncio.sleep(0.05)
                continue
            if next_t is None:
                next_t = now
            elif lvl.rate != rate:
                next_t = min(next_t, now + 1.0 / lvl.rate)
            rate = lvl.rate
            interval = 1.0 / rate
            end = self.t0 + lvl.duration
            cap = lvl.requests
            tickets = self.tickets
            while next_t <= now and next_t < end:
                if cap is not None and issued >= cap:
                    break
                tickets.append(next_t)
                issued += 1
                self.due += 1
                next_t += interval
            waiters = self.waiters
            n = len(tickets)
            while n and waiters:
                w = waiters.popleft()
                if not w.done():
                    w.set_result(None)
                    n -= 1
            if cap is not None and issued >= cap and not tickets and not self.rec.in_flight:
                self.done.set()
            await asyncio.sleep(min(0.05, max(0.0, next_t - _monotonic())))

    # -- live figures --------------------------------------------------------------------
    def waiting(self, now: float | None = None) -> tuple[Histogram, float | None, int]:
        """(completed + waiting histogram, oldest in-flight age in ms or None, in flight).

        Live: the requests in flight now and the due tickets not yet sent, at their ages.
        After the end: the requests cut at the end of the drain, at their ages then."""
        if self.cut is not None:
            now, busy, tickets = self.cut
            intended = list(busy.values())
        else:
            now = _monotonic() if now is None else now
            intended = list(self.busy.values())
            tickets = self.tickets  # type: ignore[assignment]
        return waiting_histogram(self.rec.latency, intended, tickets, now)

    def snapshot(self, running: bool = True) -> LoadStats:
        rec, lvl = self.rec, self.level
        now = _monotonic()
        everyone, oldest, in_flight = self.waiting(now)
        elapsed = (self.end_time or now) - self.t0
        whole = int(elapsed)
        series = rec.series[:whole]
        start = max(0, whole - LIVE_SERIES)
        if running and not self.stopping:  # (not the drain: no sends are due then)
            self.watch.read(rec.sent, max(0, lvl.clients - in_flight))
            fig = self.watch.figures(lvl.rate)
            raw = "" if self.paused else verdict(fig, lvl.rate, lvl.clients)  # paused: no sends due
            flag = self.warning.update(now, raw)  # shown once it has held a while
            if fig.cpu is not None:
                self.readings += 1
                self.flagged += bool(raw)
        else:  # the end or the drain: the run's own verdict, over the time it issued
            fig = Figures()
            if self.run_flag is None:
                run = self.watch.run_figures(lvl.rate, self.due)
                self.run_flag = verdict(run, lvl.rate, lvl.clients)
            flag = self.run_flag
        return LoadStats(
            time=now,
            elapsed=elapsed,
            level=lvl.name,
            clients=lvl.clients,
            target_rate=lvl.rate,
            running=running,
            paused=self.paused,
            requests=rec.requests,
            status=dict(rec.status),
            errors={k: v for k, v in rec.errors.items() if v},
            in_flight=in_flight,
            open_connections=rec.open,
            latency_ms=rec.latency.percentiles(),
            latency_all_ms=everyone.percentiles(),
            oldest_wait_ms=oldest,
            connect_ms=rec.connect.percentiles(),
            connect_seconds=rec.connect.by_second(),
            phases=rec.phases(),
            latency_hist=rec.latency.to_loghist(),
            draining=running and self.stopping,
            rps=float(series[-1]) if series else 0.0,
            rps_series=tuple(float(x) for x in series[start:]),
            sent=rec.sent,
            backlog=len(self.tickets) if self.cut is None else len(self.cut[2]),
            series_start=start,
            engine=self.engine_name,
            generator_cpu=fig.cpu,
            generator_busy=fig.busy,
            schedule_lag=fig.lag,
            generator_cpu_s=self.watch.cpu_s,
            bottleneck=flag,
            bottleneck_share=self.flagged / self.readings if self.readings else None,
        )

    async def _publisher(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY)
            self.publish("stats", self.snapshot())

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> LoadResult:
        # one function on purpose: start, run, drain and cut, read in the order they happen
        self.engine = make_engine(self.engine_name, self.target, self.level, self.rec)
        await self.engine.start()
        self.t0 = self.rec.t0 = _monotonic()
        self.watch.reset()
        lvl = self.level
        for i in range(lvl.clients):
            self._spawn(i, lvl.ramp * i / lvl.clients if lvl.ramp else 0.0)
        helpers = [
            asyncio.create_task(self._pacer()),
            asyncio.create_task(self._publisher()),
        ]
        self.publish("stats", self.snapshot())
        while not self.done.is_set():
            left = self.t0 + self.level.duration - _monotonic()
            if left <= 0:
                break
            if self.level.rate is None and not any(not t.done() for t in self.users.values()):
                break  # every user is done: request cap reached
            try:
                await asyncio.wait_for(self.done.wait(), min(left, 0.1))
            except TimeoutError:
                pass
        # stop issuing; let requests in flight finish for a moment, then cut
        self.stopping = True
        self.gen += 1
        issue_end = _monotonic()
        self._wake_all()
        for i, task in self.users.items():
            if i not in self.busy:
                task.cancel()
        tasks = [t for t in self.users.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=DRAIN)
            # what is still in flight now is cut: counted as such, at its age now
            self.cut = (_monotonic(), dict(self.busy), tuple(self.tickets))
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for h in helpers:
            h.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await self.engine.aclose()
        if self.cut is None:
            self.cut = (_monotonic(), {}, tuple(self.tickets))
        # like wrk: the rate is over the time requests were issued; the drain is not counted
        self.end_time = issue_end
        final = self.snapshot(running=False)
        elapsed = self.end_time - self.t0
        rec = self.rec
        whole = self.rec.series[: max(1, int(elapsed + 0.999))]
        return LoadResult(
            url=self.target.url,
            engine=self.engine_name,
            level=self.level,
            stats=final,
            latency=self.rec.latency,
            connect=self.rec.connect,
            elapsed=elapsed,
            rps_series=tuple(float(x) for x in whole),
            latency_all=self.waiting()[0],
            phases=rec.phase_hists(),
        )
