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
) -> RunSummary:
    """Start `config`, take a baseline sample, run `level` to its end, sum the run up.

    Start-up failures raise (ServerError/BindError, ConfigError, LoadError) with nothing
    left running; a server that dies mid-run, or a load that fails, ends the run early
    and is reported in the summary (`summary.ok` is False). `stop` ends it early too
    (Ctrl-C), with `interrupted` set."""
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
        server_error = _sample_until_done(session, builder, level, period, stop, on_sample, t0)
        summary = _finish(session, builder, server_error, t0, interrupted=stop.is_set())
        summary.stuck_episodes = session.autocapture.episodes
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
) -> str | None:
    """Sample until the load ends, the server dies, or `stop`; the server's error if it died."""
    while not stop.wait(period):
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
