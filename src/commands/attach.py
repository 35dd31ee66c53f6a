"""`serverscope attach (--pid PID | --port PORT | both) [--table] [--once] [--json]
[--status-url URL] [--exact-accepts | --estimate-accepts] [--record FILE]
[--export HOST:PORT [--no-ui]]`.

By default it opens the Textual monitor the lab uses (tui.screens.attach: no model or load
chooser, no faults: the server is not ours; q detaches and leaves it running); `--table`
is the rich table, `--once`/`--json` print snapshots. Accepts per worker are exact (eBPF)
when root and the kernel allow it, else an estimate; the table's head (the monitor's
subtitle) says which and why. `--status-url` reads Apache's mod_status (auto-detected
at http://127.0.0.1:PORT/server-status when the server answers it).

With `--export ... --no-ui` it is a host agent: the same sampling loop, snapshots handed to
the Prometheus exporter only, nothing drawn.

Registered by `commands.main` through `add_parser(subparsers)`; `run(args)` returns the
exit code. Ctrl-C (or SIGTERM) ends the live view between two samples.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator

from judging import diagnosis
from judging.analyser import Analyser
from lab.autocapture import AutoCapture
from loadgen.levels import PRESETS, LoadError, preset
from loadgen.runner import LoadRunner
from plumbing.signals import stop_on
from sources.sampler import DEFAULT_PERIOD, AttachError, Sampler
from values.recording import RecordingWriter
from values.snapshot import Snapshot

from . import export
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_stuck_args,
    add_width_arg,
    fail,
    fit_console,
    seconds,
    stuck_from_args,
)

Sink = Callable[[Snapshot], None]  # handed every snapshot: the recorder, the exporter
ONCE_INTERVAL_S = 0.5  # a one-shot CPU % is measured over at least this long ...
# ... and its diagnoses over as long as their rules need (starvation: 1 s of samples)
ONCE_SPAN_S = max(ONCE_INTERVAL_S, *diagnosis.MIN_SPAN_S.values())


PROG = "serverscope attach"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    # ~65 lines of flat argument declarations, one after the other: splitting them would
    # only scatter the command's one list of flags
    p = subparsers.add_parser(
        "attach",
        help="watch a server serverscope did not start (by pid or port)",
        description=(
            "Watch a running server in the monitor (q detaches; the server keeps running): "
            "its workers, CPU, connections and accepts per worker, accept queue(s), "
            "imbalance and diagnoses. What cannot be read from outside shows as unknown."
        ),
    )
    p.add_argument("--pid", type=int, help="the server's (master) process id")
    p.add_argument(
        "--port",
        type=int,
        help="a TCP port the server listens on (with --pid: its port, for a user who may "
        "not read the server's sockets)",
    )
    p.add_argument(
        "--netns",
        metavar="PATH",
        help="the network namespace to read the server's sockets in (/proc/PID/ns/net or "
        "/run/netns/NAME; default: the server's own, found from --pid)",
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="draw the rich table instead of the Textual monitor",
    )
    p.add_argument(
        "--threads", action="store_true", help="unfold per-thread rows (monitor: t toggles)"
    )
    p.add_argument(
        "--load",
        metavar="PRESET",
        choices=list(PRESETS),
        help=f"also drive serverscope's load generator at the server (GET /, 127.0.0.1 only, "
        f"for the preset's duration): {', '.join(PRESETS)}",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help=f"print one snapshot and exit (after {ONCE_SPAN_S:g} s of samples: what the "
        "diagnoses need)",
    )
    add_width_arg(p)
    p.add_argument(
        "--status-url",
        metavar="URL",
        default="auto",
        help="Apache mod_status URL (e.g. http://127.0.0.1:8080/server-status); default "
        "auto: /server-status on the port when an Apache answers it; 'none': never (its "
        "request a second shows as one worker's connection)",
    )
    acc = p.add_mutually_exclusive_group()
    acc.add_argument(
        "--exact-accepts",
        dest="exact_accepts",
        action="store_const",
        const=True,
        default=None,
        help="count accepts exactly with eBPF (bpftrace, root); default: when root",
    )
    acc.add_argument(
        "--estimate-accepts",
        dest="exact_accepts",
        action="store_const",
        const=False,
        help="estimate accepts from new connections (no eBPF)",
    )
    p.add_argument("--json", action="store_true", help="print snapshots as JSON (one per line)")
    p.add_argument(
        "--period",
        type=seconds(above=0),
        default=DEFAULT_PERIOD,
        help=f"seconds between samples (default {DEFAULT_PERIOD:g})",
    )
    p.add_argument("--window", type=seconds(above=0), default=5.0, help="imbalance window, s (5)")
    p.add_argument(
        "--record", metavar="FILE", help="also write every snapshot to FILE (JSON Lines)"
    )
    export.add_args(p)
    p.add_argument(
        "--no-ui", action="store_true", help="draw nothing (an agent for --export or --record)"
    )
    add_stuck_args(p)
    p.set_defaults(func=run)
    return p


def run(a: argparse.Namespace) -> int:
    if a.pid is None and a.port is None:
        return fail(PROG, "give --pid PID or --port PORT (or both)")
    if a.no_ui and (a.once or a.json or not (a.export or a.record)):
        return fail(PROG, "--no-ui goes with --export or --record, not --once/--json")
    if a.table and (a.json or a.no_ui):
        return fail(PROG, "--table draws the table: not with --json or --no-ui")
    short = [
        f"{rule} needs {need:g} s" for rule, need in diagnosis.MIN_SPAN_S.items() if a.window < need
    ]
    if short:  # said, not refused: every figure and the other rules still hold
        print(
            f"{PROG}: --window {a.window:g} s is too short to diagnose: {', '.join(short)} "
            "of samples",
            file=sys.stderr,
        )
    if a.status_url == "none":
        a.status_url = None
    elif a.status_url != "auto" and not a.status_url.startswith(("http://", "https://")):
        return fail(PROG, f"--status-url {a.status_url!r}: give an http:// URL, auto or none")
    try:
        sampler = Sampler.attach(
            pid=a.pid,
            port=a.port,
            status_url=a.status_url,
            exact_accepts=a.exact_accepts,
            netns=a.netns,
        )
        analyser = Analyser(window_s=a.window)
    except AttachError as e:
        return fail(PROG, str(e), EXIT_FAILED)
    exporter = None
    try:
        exporter = export.from_args(a, PROG)
        runner = _load(a, sampler)
    except (export.ExportError, LoadError) as e:
        sampler.close()  # its bpftrace child, when counting exact accepts
        if exporter is not None:
            exporter.close()
        return fail(PROG, str(e), EXIT_USAGE)
    rec = None
    if a.record:
        rec = RecordingWriter(a.record, meta={"attach": {"pid": a.pid, "port": a.port}})
    sinks: list[Sink] = []
    auto = AutoCapture(stuck_from_args(a))  # stuck workers' stacks (not for --once)
    if exporter is not None:
        sinks.append(exporter.update)
    if rec is not None:
        sinks.append(rec.write)
    try:
        if exporter is not None and a.no_ui:
            print(f"{PROG}: exporting on {exporter.url}", file=sys.stderr)
        if a.once:
            return _once(sampler, analyser, a, sinks)
        if not (a.table or a.json or a.no_ui):
            return _monitor(sampler, analyser, a, sinks, runner, auto)
        with stop_on(threading.Event()) as stop:
            return _live(sampler, lambda raw: auto.step(analyser.annotate(raw)), a, sinks, stop)
    except RuntimeError as e:  # the target exited
        return fail(PROG, str(e), EXIT_FAILED)
    except KeyboardInterrupt:  # --once, whose wait is short
        return EXIT_OK
    finally:
        if runner is not None:
            runner.stop()
        auto.close()
        sampler.close()
        if rec is not None:
            rec.close()
        if exporter is not None:
            exporter.close()


def _load(a: argparse.Namespace, sampler: Sampler) -> LoadRunner | None:
    """The load generator at the server's first port on 127.0.0.1, started; None without
    --load. A real server has no /work endpoint, so the preset's request costs are
    dropped (GET /); the preset's duration bounds it, and LoadRunner refuses non-loopback."""
    if not a.load:
        return None
    ports = getattr(sampler.source, "ports", [])
    if not ports:
        raise LoadError("--load: the server listens on no TCP port")
    ns = getattr(sampler.source, "netns", None)
    if ns is not None and not ns.own:  # our 127.0.0.1 is not the server's
        raise LoadError(f"--load: the server is in another network namespace ({ns.path})")
    level = preset(a.load).with_(cpu_ms=0.0, io_ms=0.0, bytes=0)
    runner = LoadRunner(f"http://127.0.0.1:{ports[0]}/", level).start()
    sampler.load = runner.stats
    return runner


def _once(sampler: Sampler, analyser: Analyser, a: argparse.Namespace, sinks: list[Sink]) -> int:
    """Samples every --period until ONCE_SPAN_S of them are covered (the CPU % and every
    diagnosis rule have what they need), then prints the last one."""
    snap = analyser.annotate(sampler.sample())
    covered = 0.0
    while covered < ONCE_SPAN_S:
        time.sleep(a.period)
        snap = analyser.annotate(sampler.sample())
        covered += snap.interval_s or 0.0
    for sink in sinks:
        sink(snap)
    if a.json:
        print(json.dumps(snap.to_dict()))
    else:
        from rich.console import Console

        from text.attach import render, wanted_width

        console = fit_console(Console(), a.width, lambda: wanted_width(snap, threads=a.threads))
        console.print(render(snap, threads=a.threads))
    return EXIT_OK


def _monitor(
    sampler: Sampler,
    analyser: Analyser,
    a: argparse.Namespace,
    sinks: list[Sink],
    runner: LoadRunner | None,
    auto: AutoCapture,
) -> int:
    """The Textual monitor until q; `run`'s finally stops the load and the sampler."""
    from tui.app import run_attach
    from tui.attach_feed import AttachFeed

    load_pid = runner.pid if runner is not None else None
    stops = [runner.stop] if runner is not None else []
    feed = AttachFeed(
        sampler,
        analyser,
        period=a.period,
        sinks=sinks,
        on_close=stops,
        load_pid=load_pid,
        autocapture=auto,
    )
    return run_attach(feed, threads=a.threads)


def _samples(sampler: Sampler, period: float, stop: threading.Event) -> Iterator[Snapshot]:
    """A sample every `period` seconds on a fixed schedule, until `stop` (Ctrl-C, SIGTERM)."""
    next_at = time.monotonic()
    while not stop.is_set():
        yield sampler.sample()
        next_at += period
        delay = next_at - time.monotonic()
        if delay <= 0:
            next_at = time.monotonic()
        elif stop.wait(delay):
            return


def _live(
    sampler: Sampler,
    annotate: Callable[[Snapshot], Snapshot],
    a: argparse.Namespace,
    sinks: list[Sink],
    stop: threading.Event,
) -> int:
    if a.json or a.no_ui:
        for snap in map(annotate, _samples(sampler, a.period, stop)):
            for sink in sinks:
                sink(snap)
            if a.json:
                print(json.dumps(snap.to_dict()), flush=True)
        return EXIT_OK
    from rich.console import Console
    from rich.live import Live

    from text.attach import render, wanted_width

    console = Console()
    with Live(console=console, auto_refresh=False, screen=False) as live:
        for snap in map(annotate, _samples(sampler, a.period, stop)):
            for sink in sinks:
                sink(snap)
            fit_console(console, a.width, functools.partial(wanted_width, snap, threads=a.threads))
            live.update(render(snap, threads=a.threads), refresh=True)
    return EXIT_OK
