"""`serverscope fleet [--prometheus URL] [--job NAME] [--minutes N] [--period S] [--once]
[--json] [--allow-remote]`: every server the agents export, read back from Prometheus.

By default the Textual screen (tui.screens.fleet): the servers worst first, refreshed every
--period; Enter shows the selected one's workers over the last --minutes. `--once` prints
the table once; `--json` prints the fleet as JSON (once with --once, else one line per
refresh until Ctrl-C). The Prometheus URL must be on loopback unless --allow-remote.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading

from lab.fleet_source import FleetReader
from plumbing.signals import stop_on
from readers.promapi import PromClient, PromError
from values.fleet import Fleet

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_width_arg, fail, fit_console, seconds

PROG = "serverscope fleet"
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"  # Prometheus's own default address


WEEK_MIN = 7 * 24 * 60.0


def minutes(text: str) -> float:
    """A number of minutes, more than 0 and at most a week."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= WEEK_MIN):
        raise argparse.ArgumentTypeError(
            f"expected minutes, more than 0 and at most {WEEK_MIN:g} (a week), got {text!r}"
        )
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fleet",
        help="every server the agents export, read back from Prometheus, worst first",
        description=(
            "Read back from Prometheus what `serverscope attach --no-ui --export` agents "
            "(and lab runs with --export) export: every host and server with its imbalance, "
            "accept queue, CPU throttling and diagnoses, worst first; select one to see its "
            "workers over the last minutes."
        ),
    )
    p.add_argument(
        "--prometheus",
        metavar="URL",
        default=DEFAULT_PROMETHEUS,
        help=f"the Prometheus server (default {DEFAULT_PROMETHEUS}; loopback unless "
        "--allow-remote)",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a Prometheus URL that is not on loopback",
    )
    p.add_argument("--job", metavar="NAME", help="only the targets of this Prometheus job")
    p.add_argument(
        "--minutes",
        type=minutes,
        default=10.0,
        help="list the servers seen over this many minutes; the history covers as long (10)",
    )
    p.add_argument(
        "--period",
        type=seconds(at_least=0.5, at_most=3600),
        default=5.0,
        help="seconds between refreshes (5)",
    )
    p.add_argument("--once", action="store_true", help="read once, print, exit")
    p.add_argument("--json", action="store_true", help="print the fleet as JSON")
    add_width_arg(p)
    p.set_defaults(func=run)
    return p


def run(a: argparse.Namespace) -> int:
    try:
        client = PromClient(a.prometheus, allow_remote=a.allow_remote)
    except PromError as e:
        return fail(PROG, str(e), EXIT_USAGE)
    reader = FleetReader(client, job=a.job, minutes=a.minutes)
    try:
        if a.once:
            return _print(reader.read(), a)
        if a.json:
            return _stream(reader, a)
        from tui.fleet_app import run_fleet

        return run_fleet(reader, period=a.period)
    except PromError as e:
        return fail(PROG, str(e), EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        reader.close()


def _print(fleet: Fleet, a: argparse.Namespace) -> int:
    if a.json:
        print(json.dumps(fleet.to_dict()))
    else:
        from rich.console import Console

        from text.fleet import render, wanted_width

        console = fit_console(Console(), a.width, lambda: wanted_width(fleet))
        console.print(render(fleet))
    if not fleet.servers:
        print(
            f"{PROG}: no serverscope agent seen over the last {a.minutes:g} min at {a.prometheus}",
            file=sys.stderr,
        )
    return EXIT_OK


def _stream(reader: FleetReader, a: argparse.Namespace) -> int:
    """One JSON line per --period until Ctrl-C or SIGTERM; a failed read is one line on
    stderr and the next refresh tries again."""
    with stop_on(threading.Event()) as stop:
        while not stop.is_set():
            try:
                print(json.dumps(reader.read().to_dict()), flush=True)
            except PromError as e:
                print(f"{PROG}: {e}", file=sys.stderr, flush=True)
            if stop.wait(a.period):
                break
    return EXIT_OK
