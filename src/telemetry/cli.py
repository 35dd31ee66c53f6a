"""`serverscope attach (--pid PID | --port PORT) [--once] [--json] [--record FILE]
[--export HOST:PORT [--no-ui]]`.

With `--export ... --no-ui` it is a host agent: the same sampling loop, snapshots handed to
the Prometheus exporter only, nothing drawn.

Registered by `serverscope.cli` through `add_parser(subparsers)`; `run(args)` returns the
exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from export import cli as export_cli

from .analyser import Analyser
from .recording import RecordingWriter
from .sampler import DEFAULT_PERIOD, AttachError, Sampler
from .snapshot import Snapshot

Sink = Callable[[Snapshot], None]  # handed every snapshot: the recorder, the exporter
ONCE_INTERVAL_S = 0.5  # a one-shot CPU % is measured over at least this long


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "attach",
        help="watch a server serverscope did not start (by pid or port)",
        description=(
            "Watch a running server: its process tree, CPU and open connections per process, "
            "and its accept queue(s). No scoreboard, so worker states show as unknown."
        ),
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--pid", type=int, help="the server's (master) process id")
    who.add_argument("--port", type=int, help="a TCP port the server listens on")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--json", action="store_true", help="print snapshots as JSON (one per line)")
    p.add_argument(
        "--period",
        type=_positive,
        default=DEFAULT_PERIOD,
        help=f"seconds between samples (default {DEFAULT_PERIOD:g})",
    )
    p.add_argument("--window", type=_positive, default=5.0, help="imbalance window, s (5)")
    p.add_argument(
        "--record", metavar="FILE", help="also write every snapshot to FILE (JSON Lines)"
    )
    export_cli.add_args(p)
    p.add_argument(
        "--no-ui", action="store_true", help="draw nothing (an agent for --export or --record)"
    )
    p.set_defaults(func=run)
    return p


def run(a: argparse.Namespace) -> int:
    if a.no_ui and (a.once or a.json or not (a.export or a.record)):
        print(
            "serverscope attach: --no-ui goes with --export or --record, not --once/--json",
            file=sys.stderr,
        )
        return 2
    try:
        sampler = Sampler.attach(pid=a.pid, port=a.port)
        analyser = Analyser(window_s=a.window)
    except AttachError as e:
        print(f"serverscope attach: {e}", file=sys.stderr)
        return 1
    try:
        exporter = export_cli.from_args(a, "serverscope attach")
    except export_cli.ExportError as e:
        print(f"serverscope attach: {e}", file=sys.stderr)
        return 2
    rec = None
    if a.record:
        rec = RecordingWriter(a.record, meta={"attach": {"pid": a.pid, "port": a.port}})
    sinks: list[Sink] = []
    if exporter is not None:
        sinks.append(exporter.update)
    if rec is not None:
        sinks.append(rec.write)
    try:
        if exporter is not None and a.no_ui:
            print(f"serverscope attach: exporting on {exporter.url}", file=sys.stderr)
        return (_once if a.once else _live)(sampler, analyser, a, sinks)
    except RuntimeError as e:  # the target exited
        print(f"serverscope attach: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if rec is not None:
            rec.close()
        if exporter is not None:
            exporter.close()


def _once(sampler: Sampler, analyser: Analyser, a: argparse.Namespace, sinks: list[Sink]) -> int:
    analyser.annotate(sampler.sample())
    time.sleep(max(ONCE_INTERVAL_S, a.period))
    snap = analyser.annotate(sampler.sample())
    for sink in sinks:
        sink(snap)
    if a.json:
        print(json.dumps(snap.to_dict()))
    else:
        from rich.console import Console

        from .render import render

        Console().print(render(snap))
    return 0


def _live(sampler: Sampler, analyser: Analyser, a: argparse.Namespace, sinks: list[Sink]) -> int:
    if a.json or a.no_ui:
        for snap in map(analyser.annotate, sampler.iter_samples(a.period)):
            for sink in sinks:
                sink(snap)
            if a.json:
                print(json.dumps(snap.to_dict()), flush=True)
        return 0
    from rich.live import Live

    from .render import render

    with Live(auto_refresh=False, screen=False) as live:
        for snap in map(analyser.annotate, sampler.iter_samples(a.period)):
            for sink in sinks:
                sink(snap)
            live.update(render(snap), refresh=True)
    return 0
