"""`serverscope load URL ...`: run one load with a progress bar, print a wrk-like summary."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from lab.aggregate import write_json
from loadgen.engine import ENGINES, resolve
from loadgen.levels import PRESET_HELP, PRESETS, LoadError, LoadLevel
from loadgen.runner import LoadRunner
from loadgen.stats import LoadStats
from plumbing.signals import stop_on
from text.load import live_figures, live_progress, load_summary

from . import common
from .common import EXIT_FAILED, EXIT_OK, add_load_args, check_output, console_for_output, fail


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    presets = "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items())
    p = subparsers.add_parser(
        "load",
        help="run a load generator against a URL (loopback only by default)",
        description="Load a server with a preset or custom load level and print a wrk-like "
        f"summary. Presets: {presets}. Options given with --preset override its fields.",
    )
    p.add_argument("url", nargs="?", help="target, e.g. http://127.0.0.1:8080/")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    add_load_args(p, default=None, title="the load (a preset, and options over its fields)")
    p.add_argument("--engine", choices=ENGINES, default="fast", help="fast (default) or httpx")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio even with uvloop")
    return p


def level_from_args(a: argparse.Namespace) -> LoadLevel:
    """--preset (if any) with the options given over it."""
    return common.level_from_args(a, default=None)


PROG = "serverscope load"


def all_refused(s: LoadStats, attempts: int) -> bool:
    """Nothing completed and every one of at least `attempts` connects was refused."""
    refused = s.errors.get("refused", 0)
    return s.requests == 0 and refused >= attempts and refused == s.error_count


def _host_port(url: str, allow_remote: bool) -> str:
    t = resolve(url, allow_remote)
    return f"{t.host}:{t.port}"


def run(a: argparse.Namespace) -> int:
    if a.list_presets:
        width = max(map(len, PRESETS))
        for name, text in PRESET_HELP.items():
            print(f"{name:<{width}}  {text}")
        return 0
    if not a.url:
        return fail(PROG, "give a URL, e.g. http://127.0.0.1:8080/")
    try:
        check_output("--json", a.json)
    except OSError as e:
        return fail(PROG, str(e))
    try:
        level = level_from_args(a)
        runner = LoadRunner(a.url, level, a.engine, a.allow_remote, use_uvloop=not a.no_uvloop)
        runner.start()
    except LoadError as e:
        return fail(PROG, str(e))
    console = console_for_output(120)
    refused: LoadStats | None = None
    try:
        with stop_on(threading.Event()) as stop, live_progress(console) as progress:
            task = progress.add_task(level.name, total=level.duration, live="starting")
            while runner.running:
                if stop.wait(0.25):
                    break
                s = runner.stats()
                if all_refused(s, level.clients):  # nobody listens: say so now, not in 10 s
                    refused = s
                    break
                done = min(s.elapsed, level.duration)
                progress.update(task, completed=done, live=live_figures(s))
        result = runner.stop()
    finally:
        runner.stop()
    if result is not None and all_refused(result.stats, 1):
        refused = result.stats
    if refused is not None:
        where = _host_port(a.url, a.allow_remote)
        n = refused.errors.get("refused", 0)
        return fail(
            PROG,
            f"{where} refused every connection ({n} refused in {refused.elapsed:.1f} s): "
            "is a server listening there?",
            EXIT_FAILED,
        )
    if result is None:
        return fail(PROG, runner.error or "no result", EXIT_FAILED)
    load_summary(console, result)
    if result.stats.requests == 0:  # the summary says why (errors, still waiting)
        why = ""
        if result.stats.errors.get("bad_response"):  # the likely mistake: another protocol
            why = f": {_host_port(a.url, a.allow_remote)} does not answer HTTP/1.x"
        return fail(PROG, f"no request completed in {result.stats.elapsed:.1f} s{why}", EXIT_FAILED)
    if a.json:
        try:
            write_json(a.json, result.to_json_dict())
        except OSError as e:
            return fail(PROG, f"cannot write {a.json}: {e.strerror}", EXIT_FAILED)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m commands.load`); `serverscope load` is the usual one."""
    parser = argparse.ArgumentParser(prog="loadgen")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    a = parser.parse_args(["load", *(argv if argv is not None else sys.argv[1:])])
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
