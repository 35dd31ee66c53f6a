"""`serverscope attach (--pid PID | --port PORT) [--once] [--json] [--record FILE]`.

Registered by `serverscope.cli` through `add_parser(subparsers)`; `run(args)` returns the
exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .recording import RecordingWriter
from .sampler import DEFAULT_PERIOD, AttachError, Sampler

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
    p.set_defaults(func=run)
    return p


def run(a: argparse.Namespace) -> int:
    try:
        sampler = Sampler.attach(pid=a.pid, port=a.port, window_s=a.window)
    except AttachError as e:
        print(f"serverscope attach: {e}", file=sys.stderr)
        return 1
    rec = None
    if a.record:
        rec = RecordingWriter(a.record, meta={"attach": {"pid": a.pid, "port": a.port}})
    try:
        return _once(sampler, a, rec) if a.once else _live(sampler, a, rec)
    except RuntimeError as e:  # the target exited
        print(f"serverscope attach: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if rec is not None:
            rec.close()


def _once(sampler: Sampler, a: argparse.Namespace, rec: RecordingWriter | None) -> int:
    sampler.sample()
    time.sleep(max(ONCE_INTERVAL_S, a.period))
    snap = sampler.sample()
    if rec is not None:
        rec.write(snap)
    if a.json:
        print(json.dumps(snap.to_dict()))
    else:
        from rich.console import Console

        from .render import render

        Console().print(render(snap))
    return 0


def _live(sampler: Sampler, a: argparse.Namespace, rec: RecordingWriter | None) -> int:
    if a.json:
        for snap in sampler.iter_samples(a.period):
            if rec is not None:
                rec.write(snap)
            print(json.dumps(snap.to_dict()), flush=True)
        return 0
    from rich.live import Live

    from .render import render

    with Live(auto_refresh=False, screen=False) as live:
        for snap in sampler.iter_samples(a.period):
            if rec is not None:
                rec.write(snap)
            live.update(render(snap), refresh=True)
    return 0
