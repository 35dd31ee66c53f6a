"""`serverscope run`: one model under one load without the TUI, then a summary (rich), and
the summary as JSON and the run as CSV if asked. The run itself is `lab.headless`."""

from __future__ import annotations

import argparse
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from judging.stuck import StuckSettings
from lab.aggregate import write_csv, write_json
from lab.headless import run_headless
from lab.scenarios import Fault
from lab.server import ServerConfig
from lab.session import Session
from lab.summary import RunSummary
from loadgen.levels import LoadError, LoadLevel
from plumbing.signals import stop_on
from text.load import live_figures, live_progress
from text.summary import render_summary
from values.snapshot import SAMPLE_PERIOD_S, Snapshot
from values.units import dur

from . import common, cpu_limit_arg, export
from .common import (
    DAY_S,
    EXIT_FAILED,
    EXIT_START,
    add_model_args,
    check_output,
    config_from_args,
    console_for_output,
    exit_status,
    fail,
    seconds,
)

PROG = "serverscope run"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run",
        help="run one model under one load without the TUI, then print a summary",
        description="Start a model, run a load against it (a preset, and any option of "
        "`serverscope load` over it) with a progress bar, and "
        "print a summary: throughput, latency and connect-time percentiles, errors, accept "
        "and CPU imbalance over the whole run, the longest accept queue, ListenOverflows "
        "(namespace-wide) and the diagnoses seen. Exit status 1 if the server died or the "
        "load failed, 2 if it could not start.",
    )
    p.add_argument("--model", required=True, help="model name (see `serverscope serve --list`)")
    add_load_args(p)
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON to FILE")
    p.add_argument("--csv", metavar="FILE", help="write the run as a time series to FILE")
    p.add_argument("--record", metavar="FILE", help="record every snapshot to FILE (JSON Lines)")
    export.add_args(p)
    cpu_limit_arg.add_arg(p)
    add_model_args(p)
    common.add_stuck_args(p)
    common.add_fault_arg(p, "during the run")
    return p


DEFAULT_PRESET = "burst"


def add_load_args(p: argparse.ArgumentParser) -> None:
    """The load (a preset and the options over it, as `serverscope load` takes them) and
    --period: shared with `compare`."""
    common.add_load_args(
        p,
        default=DEFAULT_PRESET,
        title=f"the load (the {DEFAULT_PRESET} preset unless --load names another; each "
        "option overrides its field)",
    )
    p.add_argument(
        "--period",
        type=seconds(above=0, at_most=DAY_S),
        default=SAMPLE_PERIOD_S,
        help=f"seconds between samples ({SAMPLE_PERIOD_S:g})",
    )


def level_from_args(a: argparse.Namespace) -> LoadLevel:
    return common.level_from_args(a, default=DEFAULT_PRESET)


def progress_run(
    console: Console,
    config: ServerConfig,
    level: LoadLevel,
    *,
    title: str,
    period: float = SAMPLE_PERIOD_S,
    record: str | None = None,
    stop: threading.Event | None = None,
    observers: Sequence[Callable[[Snapshot], None]] = (),
    stuck_settings: StuckSettings | None = None,
    cpu_limit: float | None = None,
    faults: Sequence[Fault] = (),
) -> RunSummary:
    """`run_headless` with a rich progress bar (transient) showing the live figures;
    `cpu_limit`: cores, the server in a CPU-limited cgroup (lab.cpu_limit)."""
    with live_progress(console) as progress:
        task = progress.add_task(title, total=level.duration, live="starting")

        def show(snap: Snapshot, elapsed: float) -> None:
            live = live_figures(snap.client) if snap.client else ""
            live += f"  queue {snap.queue}"
            ph = snap.window_phases
            if ph is not None and ph.queue is not None and ph.queue.count:
                live += f" (wait p99 {dur(ph.queue.quantile_ms(0.99))})"
            if snap.diagnoses:
                live += "  [yellow]" + ", ".join(d.rule for d in snap.diagnoses) + "[/]"
            progress.update(task, completed=min(elapsed, level.duration), live=live)

        return run_headless(
            config,
            level,
            period=period,
            record=record,
            on_sample=show,
            stop=stop,
            observers=observers,
            stuck_settings=stuck_settings,
            session_factory=functools.partial(Session, cpu_limit=cpu_limit),
            faults=faults,
        )


def command(a: argparse.Namespace) -> int:
    """Start-up errors (ConfigError, ServerError) propagate to `main`, which prints them in
    one line with exit status 2; a LoadError does the same here."""
    try:
        level = level_from_args(a)
        for option in ("json", "csv", "record"):
            check_output(f"--{option}", getattr(a, option))
        config = config_from_args(a.model, a)
        fault = common.fault_from_args(a, level, config)
        exporter = export.from_args(a, PROG)
    except (LoadError, OSError, ValueError, export.ExportError) as e:
        return fail(PROG, str(e), EXIT_START)
    console = console_for_output()
    try:
        with stop_on(threading.Event()) as stop:  # Ctrl-C ends the run; the summary prints
            summary = progress_run(
                console,
                config,
                level,
                title=f"{config.model} / {level.name}",
                period=a.period,
                record=a.record,
                stop=stop,
                observers=[exporter.update] if exporter else (),
                stuck_settings=common.stuck_from_args(a),
                cpu_limit=a.cpu_limit,
                faults=(fault,) if fault else (),
            )
    except LoadError as e:
        return fail(PROG, str(e), EXIT_START)
    finally:
        if exporter is not None:
            exporter.close()
    render_summary(console, summary)
    why = None if fault is None else fault.missed(summary.faults)
    if fault is not None and why is not None:
        console.print(f"{PROG}: the fault was not done: {fault.describe()} ({why})")
    try:
        if a.json:
            write_json(a.json, summary.to_json_dict())
        if a.csv:
            write_csv(a.csv, summary)
    except OSError as e:
        return fail(PROG, f"cannot write {e.filename}: {e.strerror}", EXIT_FAILED)
    return exit_status(summary.ok)
