"""`serverscope load URL ...`: run one load with a progress bar, print a wrk-like summary."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .engine import ENGINES
from .levels import PRESET_HELP, PRESETS, LoadError, LoadLevel, preset
from .result import LoadResult
from .runner import LoadRunner
from .stats import ERROR_KINDS, LoadStats

EXIT_USAGE = 2
WAIT_ALARM_MS = 1000.0  # a request waiting this long is shown in red (SYN retries start at 1 s)


def live_progress(console: Console) -> Progress:
    """The progress bar of a timed run: description, bar, live figures (`live`), elapsed."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[live]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _number(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None

    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    presets = "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items())
    p = subparsers.add_parser(
        "load",
        help="run a load generator against a URL (loopback only by default)",
        description="Load a server with a preset or custom load level and print a wrk-like "
        f"summary. Presets: {presets}. Options given with --preset override its fields.",
    )
    p.add_argument("url", nargs="?", help="target, e.g. http://127.0.0.1:8080/")
    p.add_argument("--preset", choices=list(PRESETS), help="a named load level")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--clients", type=_number(int), help="concurrent clients (connections)")
    p.add_argument(
        "--rate", type=_number(float), help="open loop at this many req/s (default: closed loop)"
    )
    conn = p.add_mutually_exclusive_group()
    conn.add_argument(
        "--keepalive", dest="keepalive", action="store_true", default=None, help="keep-alive"
    )
    conn.add_argument(
        "--close", dest="keepalive", action="store_false", help="a new connection per request"
    )
    p.add_argument("--think", type=_number(float), metavar="MS", help="think time per request")
    p.add_argument("--think-exp", action="store_true", default=None, help="exponential think")
    p.add_argument("--ramp", type=_number(float), metavar="S", help="clients arrive over S s")
    p.add_argument("--cpu-ms", type=_number(float), help="/work cpu_ms per request")
    p.add_argument("--io-ms", type=_number(float), help="/work io_ms per request")
    p.add_argument("--bytes", type=_number(int), help="/work response bytes")
    p.add_argument("--connect-timeout", type=_number(float), metavar="S", help="default 10")
    p.add_argument("--read-timeout", type=_number(float), metavar="S", help="default 30")
    p.add_argument("--requests", type=_number(int), help="stop after this many requests")
    p.add_argument("--duration", type=_number(float), metavar="S", help="seconds (default 10)")
    p.add_argument("--engine", choices=ENGINES, default="fast", help="fast (default) or httpx")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio even with uvloop")
    return p


_OVERRIDES = {
    "clients": "clients",
    "rate": "rate",
    "keepalive": "keepalive",
    "think": "think_ms",
    "think_exp": "think_exp",
    "ramp": "ramp",
    "cpu_ms": "cpu_ms",
    "io_ms": "io_ms",
    "bytes": "bytes",
    "connect_timeout": "connect_timeout",
    "read_timeout": "read_timeout",
    "requests": "requests",
    "duration": "duration",
}


def level_from_args(a: argparse.Namespace) -> LoadLevel:
    level = preset(a.preset) if a.preset else LoadLevel()
    changes = {f: getattr(a, opt) for opt, f in _OVERRIDES.items() if getattr(a, opt) is not None}
    if any(k != "duration" for k in changes) or not a.preset:
        changes["name"] = "custom"
    return level.with_(**changes).check()


def _ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.2f}s"
    if v >= 1:
        return f"{v:.2f}ms"
    return f"{v * 1000:.0f}us"


def live_figures(s: LoadStats) -> str:
    errs = s.error_count
    text = f"{s.requests} req  {s.rps:.0f} req/s  p99 {_ms(s.latency_ms.p99)}"
    text += f"  open {s.open_connections}"
    if s.oldest_wait_ms is not None and s.oldest_wait_ms >= WAIT_ALARM_MS:
        text += f"  [red]waiting {s.in_flight}, oldest {s.oldest_wait_ms / 1000:.1f} s[/]"
    if errs:
        text += f"  [red]errors {errs}[/]"
    if s.backlog:
        text += f"  backlog {s.backlog}"
    return text


def summary(console: Console, r: LoadResult) -> None:
    s = r.stats
    console.print(f"Running {r.elapsed:.1f}s test @ {r.url}")
    console.print(f"  {r.level.name}: {r.level.describe()}  (engine {r.engine})", soft_wrap=True)
    t = Table(box=None, padding=(0, 1), pad_edge=True)
    t.add_column("")
    for col in ("p50", "p90", "p99", "p99.9", "max", "mean", "count"):
        t.add_column(col, justify="right")
    rows = [("Latency", r.latency)]
    waiting = s.in_flight + s.backlog
    if waiting and r.latency_all is not None:
        # completed plus the requests still waiting when the run was cut, at their age then
        rows.append(("+ waiting", r.latency_all))
    rows.append(("Connect", r.connect))
    for name, h in rows:
        p = h.percentiles()
        values = (p.p50, p.p90, p.p99, p.p999, p.max, h.mean_ms)
        t.add_row(name, *(_ms(v) if h.count else "-" for v in values), str(h.count))
    console.print(t)
    slow = r.connect.by_second()
    if slow:
        console.print(
            "  [red]Connects by second (SYN retransmits after a dropped handshake): "
            + ", ".join(f"{k + 1} s: {n}" for k, n in enumerate(slow) if n)
            + "[/]"
        )
    console.print(
        f"  {s.requests} requests in {r.elapsed:.2f}s ({s.sent} sent = {s.requests} "
        f"completed + {s.error_count} failed + {s.in_flight} still waiting)"
    )
    if s.in_flight:
        style = "red" if (s.oldest_wait_ms or 0) >= WAIT_ALARM_MS else "yellow"
        console.print(
            f"  [{style}]{s.in_flight} requests still waiting when the run was cut, the oldest "
            f"for {_ms(s.oldest_wait_ms or 0.0)}: counted at that age in '+ waiting'[/]"
        )
    if s.backlog:
        console.print(
            f"  [yellow]{s.backlog} scheduled requests never sent: the server fell behind"
        )
    status = ", ".join(f"{code}: {n}" for code, n in sorted(s.status.items())) or "none"
    console.print(f"  Status: {status}")
    errs = ", ".join(f"{k} {s.errors[k]}" for k in ERROR_KINDS if s.errors.get(k))
    console.print(f"  Errors: {errs}" if errs else "  Errors: none")
    if r.error:
        console.print(f"  [red]{r.error}[/]")
    console.print(f"Requests/sec: {r.rps:10.2f}")


def check_output(option: str, path: str | None) -> None:
    """Refuse an output file that cannot be written, before anything runs (OSError, one line
    naming the option and the problem). Nothing is created: the run may still fail."""
    if not path:
        return
    target = Path(path)
    where = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OSError(f"cannot write {option} {path}: it is a directory")
    if not where.is_dir():
        what = "not a directory" if where.exists() else "no such directory"
        raise OSError(f"cannot write {option} {path}: {what}: {where}")
    if target.exists() and not os.access(target, os.W_OK):
        raise OSError(f"cannot write {option} {path}: permission denied")
    if not target.exists() and not os.access(where, os.W_OK | os.X_OK):
        raise OSError(f"cannot write {option} {path}: permission denied in {where}")


def run(a: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a file or pipe: keep each table row on one line
    if a.list_presets:
        width = max(map(len, PRESETS))
        for name, text in PRESET_HELP.items():
            print(f"{name:<{width}}  {text}")
        return 0
    if not a.url:
        print("serverscope load: give a URL, e.g. http://127.0.0.1:8080/", file=sys.stderr)
        return EXIT_USAGE
    if a.json:
        try:
            check_output("--json", a.json)
        except OSError as e:
            print(f"serverscope load: {e}", file=sys.stderr)
            return EXIT_USAGE
    try:
        level = level_from_args(a)
        runner = LoadRunner(a.url, level, a.engine, a.allow_remote, use_uvloop=not a.no_uvloop)
        runner.start()
    except LoadError as e:
        print(f"serverscope load: {e}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        with live_progress(console) as progress:
            task = progress.add_task(level.name, total=level.duration, live="starting")
            while runner.running:
                if stop.wait(0.25):
                    break
                s = runner.stats()
                done = min(s.elapsed, level.duration)
                progress.update(task, completed=done, live=live_figures(s))
        result = runner.stop()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        runner.stop()
    if result is None:
        print(f"serverscope load: {runner.error or 'no result'}", file=sys.stderr)
        return 1
    summary(console, result)
    if a.json:
        try:
            with open(a.json, "w") as f:
                json.dump(result.to_json_dict(), f, indent=2)
                f.write("\n")
        except OSError as e:
            print(f"serverscope load: cannot write {a.json}: {e.strerror}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m loadgen.cli`); `serverscope load` is the usual one."""
    parser = argparse.ArgumentParser(prog="loadgen")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    a = parser.parse_args(["load", *(argv if argv is not None else sys.argv[1:])])
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
