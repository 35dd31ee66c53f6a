"""Headless runs: start a model, take a baseline sample, run one load to its end, and sum
the run up with a `SummaryBuilder`; no TUI, no rich (the `run` and `compare` commands draw).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from judging.stuck import StuckSettings
from loadgen.levels import LoadLevel
from servers.config import ServerConfig
from values.snapshot import SAMPLE_PERIOD_S, Snapshot

from .aggregate import SummaryBuilder
from .scenarios import Fault, apply_fault
from .session import Session
from .summary import RunSummary

DRAIN_GRACE_S = 10.0  # the run loop gives up this long after the load's own duration


SampleCallback = Callable[[Snapshot, float], None]


def run_headless(
    config: ServerConfig,
    level: LoadLevel,
    *,
    period: float = SAMPLE_PERIOD_S,
    record: str | None = None,
    on_sample: SampleCallback | None = None,
    stop: threading.Event | None = None,
    session_factory: Callable[..., Session] = Session,
    observers: Sequence[Callable[[Snapshot], None]] = (),
    stuck_settings: StuckSettings | None = None,
    faults: Sequence[Fault] = (),
) -> RunSummary:
    """Start `config`, take a baseline sample, run `level` to its end, sum the run up.

    Start-up failures raise (ServerError/BindError, ConfigError, LoadError) with nothing
    left running; a server that dies mid-run, or a load that fails, ends the run early
    and is reported in the summary (`summary.ok` is False). `stop` ends it early too
    (Ctrl-C), with `interrupted` set. Each of `faults` is done to its worker `after_s`
    into the load (between two samples, at its time), and said in `summary.faults`."""
    level = level.check()
    stop = stop or threading.Event()
    session = session_factory(
        config, None, period=period, record=record, stuck_settings=stuck_settings
    )
    if observers:
        session.observers.extend(observers)
    try:
        session.start()  # the server only: the baseline comes before any load
        builder = SummaryBuilder(config.model, session.describe_model(), level)
        base = session.sample()
        if base is not None:
            builder.add(base)
        session.set_level(level)  # starts the load (LoadError propagates from here)
        t0 = time.monotonic()
        builder.start_clock(t0)
        due = _Faults(session, faults, t0)
        server_error = _sample_until_done(session, builder, level, period, stop, on_sample, t0, due)
        summary = _finish(session, builder, server_error, t0, interrupted=stop.is_set())
        summary.stuck_episodes = session.autocapture.episodes
        summary.faults = due.done
        return summary
    finally:
        session.close()


def _sample_until_done(
    session: Session,
    builder: SummaryBuilder,
    level: LoadLevel,
    period: float,
    stop: threading.Event,
    on_sample: SampleCallback | None,
    t0: float,
    due: _Faults,
) -> str | None:
    """Sample until the load ends, the server dies, or `stop`; the server's error if it died."""
    while not due.wait(stop, period):
        snap = session.sample()
        elapsed = time.monotonic() - t0
        if snap is not None:
            builder.add(snap)
            if on_sample is not None:
                on_sample(snap, elapsed)
        srv = session.server
        if srv is None or not srv.running:
            code = srv.exit_code if srv is not None else None
            return f"{builder.summary.model} exited during the run (code {code})"
        runner = session.runner
        if runner is None or not runner.running:
            break
        if elapsed > level.duration + DRAIN_GRACE_S:
            break
    return None


class _Faults:
    """The faults of a run not yet done, done when due (seconds since the load's start)."""

    def __init__(self, session: Session, faults: Sequence[Fault], t0: float) -> None:
        self.session, self.t0 = session, t0
        self.waiting = sorted(faults, key=lambda f: f.after_s)
        self.done: list[str] = []

    def wait(self, stop: threading.Event, period: float) -> bool:
        """`stop.wait(period)`, doing each fault due meanwhile at its time (not at the next
        sample: two runs then do it within milliseconds of each other)."""
        end = time.monotonic() + period
        while self.waiting and self.t0 + self.waiting[0].after_s <= end:
            if stop.wait(max(0.0, self.t0 + self.waiting[0].after_s - time.monotonic())):
                return True
            fault = self.waiting.pop(0)
            said = apply_fault(self.session, fault)
            self.done.append(f"{said} at {time.monotonic() - self.t0:.2f} s")
            after = fault.then()
            if after is not None and said.startswith(fault.action):
                self.waiting = sorted([*self.waiting, after], key=lambda f: f.after_s)
        return stop.wait(max(0.0, end - time.monotonic()))


def _finish(
    session: Session,
    builder: SummaryBuilder,
    server_error: str | None,
    t0: float,
    *,
    interrupted: bool,
) -> RunSummary:
    """Stop the load, take the final totals after its drain, and close the summary."""
    runner = session.runner
    result = session.submit(runner.stop).result() if runner is not None else None
    died = server_error is not None
    if not died and session.server is not None:
        if session.server.running:
            last = session.sample()  # the final totals, after the load's drain
            if last is not None:
                builder.add(last)
        else:
            died = True
            server_error = f"{builder.summary.model} exited during the run"
    load_error = None
    if runner is None:
        load_error = "the load did not start"
    elif result is None:
        load_error = runner.error or "the load generator gave no result"
    elif result.error:
        load_error = result.error
    return builder.finish(
        result,
        duration_s=time.monotonic() - t0,
        server_died=died,
        server_error=server_error,
        load_error=load_error,
        interrupted=interrupted,
    )
