"""`serverscope compare`: several models in turn under the same load, a table and an SVG
chart (`text.chart`)."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from lab.aggregate import write_json
from lab.scenarios import Fault
from lab.server import KNOBS, ConfigError, ServerConfig, ServerError, model_spec
from lab.summary import RunSummary
from loadgen.levels import LoadError, LoadLevel
from plumbing.signals import stop_on
from text.chart import DEFAULT_SVG, write_svg
from text.compare import phases_table, table
from values.snapshot import SAMPLE_PERIOD_S
from values.units import dur, pct

from . import common
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_START,
    add_model_args,
    check_output,
    config_from_args,
    console_for_output,
    fail,
)
from .run import add_load_args, level_from_args, progress_run

PROG = "serverscope compare"

# -- configs --------------------------------------------------------------------------------


def parse_models(text: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; one-line ConfigError for unknown or missing models."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--models: give at least one model, e.g. --models many_accepts,cluster")
    for name in names:
        try:
            model_spec(name)
        except ModuleNotFoundError:
            raise ConfigError(f"model {name!r} is not available in this build yet") from None
    if len(set(names)) != len(names):
        raise ConfigError("--models: a model is named twice")
    return names


def config_for(model: str, base: ServerConfig) -> tuple[ServerConfig, list[str]]:
    """`base` (the knobs given on the command line) applied to `model`: knobs the model
    does not have are left at their defaults (and named, so the table can say so)."""
    spec = model_spec(model)
    default = ServerConfig()
    changes: dict[str, object] = {"model": model}
    dropped = []
    for knob in KNOBS:
        if spec.takes(knob.name):
            continue
        if getattr(base, knob.name) != getattr(default, knob.name):
            changes[knob.name] = getattr(default, knob.name)
            dropped.append(knob.option)
    return base.with_(**changes), dropped


# -- running --------------------------------------------------------------------------------


def compare(
    names: Sequence[str],
    base: ServerConfig,
    level: LoadLevel,
    console: Console,
    *,
    period: float = SAMPLE_PERIOD_S,
    stop: threading.Event | None = None,
    fault: Fault | None = None,
) -> list[RunSummary]:
    """Each model in turn under `level` (and `fault`, done in each run at its second); a
    model that fails to start is reported and skipped."""
    stop = stop or threading.Event()
    out = []
    for i, name in enumerate(names):
        if stop.is_set():
            break
        config, dropped = config_for(name, base)
        if dropped:
            console.print(f"[dim]{name}: has no {', '.join(dropped)}; left at its default[/]")
        try:
            summary = progress_run(
                console,
                config,
                level,
                title=f"[{i + 1}/{len(names)}] {name}",
                period=period,
                stop=stop,
                faults=(fault,) if fault else (),
            )
        except (ServerError, ConfigError, LoadError) as e:
            console.print(f"[red]{name}: could not start: {e}[/]")
            continue
        out.append(summary)
        why = None if fault is None else fault.missed(summary.faults)
        for line in summary.faults:
            console.print(f"[magenta]{name}: {line}[/]")
        if fault is not None and why is not None:
            console.print(f"[red]{name}: the fault was not done: {fault.describe()} ({why})[/]")
        status = "ok" if summary.ok else "[red]failed[/]"
        console.print(
            f"{name}: {summary.rps:,.0f} req/s, p99 {dur(summary.latency.p99, space=False)}, "
            f"accept top share {pct(summary.accept_top_share)}  {status}"
        )
    return out


def to_json(summaries: Sequence[RunSummary], level: LoadLevel) -> dict[str, Any]:
    return {
        "level": level.name,
        "level_detail": level.describe(),
        "duration_s": level.duration,
        "models": [s.to_json_dict() for s in summaries],
    }


# -- the `compare` command ------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="run several models in turn under the same load; a table and an SVG chart",
        description="Run each model in turn under the same load (a preset, and any option of "
        "`serverscope load` over it) and print a table "
        "(throughput, latency, connect p99, errors, imbalance, queue, overflows, diagnoses); "
        "save a chart as SVG. Model knobs apply to the models that have them.",
    )
    p.add_argument(
        "--models", required=True, help="comma-separated models, e.g. many_accepts,cluster"
    )
    add_load_args(p)
    p.add_argument("--svg", metavar="FILE", default=DEFAULT_SVG, help=f"chart ({DEFAULT_SVG})")
    p.add_argument("--json", metavar="FILE", help="write every model's summary as JSON to FILE")
    add_model_args(p)
    common.add_fault_arg(p, "in each model's run")
    return p


def command(a: argparse.Namespace) -> int:
    try:
        level = level_from_args(a)
        # an output that cannot be written is refused before minutes of runs
        check_output("--svg", a.svg)
        check_output("--json", a.json)
        fault = common.fault_from_args(a, level)
    except (LoadError, OSError, ValueError) as e:
        return fail(PROG, str(e), EXIT_START)
    names = parse_models(a.models)  # ConfigError: one line, exit 2 (main)
    base = config_from_args(names[0], a)
    console = console_for_output()
    with stop_on(threading.Event()) as stop:
        summaries = compare(names, base, level, console, period=a.period, stop=stop, fault=fault)
    if not summaries:
        return fail(PROG, "no model ran", EXIT_FAILED)
    console.print(table(summaries))
    phases = phases_table(summaries)
    if phases is not None:
        console.print(phases)
    try:
        write_svg(a.svg, summaries, level)
        console.print(f"chart saved to {a.svg}")
        if a.json:
            write_json(a.json, to_json(summaries, level))
    except OSError as e:
        return fail(PROG, f"cannot write {e.filename}: {e.strerror}", EXIT_FAILED)
    failed = len(summaries) < len(names) or not all(s.ok for s in summaries)
    return EXIT_FAILED if failed else EXIT_OK
