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
the Prometheus exporter only, nothing drawn. Every form is the lab's `Attachment`, whose
`Watch` reads, judges, logs and records; the exporter, the JSON printer and the table are
its observers.

Registered by `commands.main` through `add_parser(subparsers)`; `run(args)` returns the
exit code. Ctrl-C (or SIGTERM) ends the live view between two samples.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
from urllib.parse import urlsplit

from lab.attach import ONCE_SPAN_S, AttachError, Attachment, starts_bpftrace, too_short
from lab.autocapture import AutoCapture
from lab.watch import DEFAULT_PERIOD, Watch
from loadgen.levels import PRESETS, LoadError, preset
from plumbing.loopback import loopback_address, refusal
from plumbing.signals import stop_on
from values.snapshot import Snapshot

from . import export
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_stuck_args,
    add_width_arg,
    check_output,
    fail,
    fit_console,
    process_id,
    seconds,
    stuck_from_args,
    tcp_port,
)

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
    p.add_argument("--pid", type=process_id, help="the server's (master) process id")
    p.add_argument(
        "--port",
        type=tcp_port,
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
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --status-url on a host not on loopback (its requests leave this machine)",
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
    return p


def run(a: argparse.Namespace) -> int:
    if a.pid is None and a.port is None:
        return fail(PROG, "give --pid PID or --port PORT (or both)")
    if a.no_ui and (a.once or a.json or not (a.export or a.record)):
        return fail(PROG, "--no-ui goes with --export or --record, not --once/--json")
    if a.table and (a.json or a.no_ui):
        return fail(PROG, "--table draws the table: not with --json or --no-ui")
    short = too_short(a.window)
    if short:  # said, not refused: every figure and the other rules still hold
        print(
            f"{PROG}: --window {a.window:g} s is too short to diagnose: {', '.join(short)} "
            "of samples",
            file=sys.stderr,
        )
    try:  # before attaching: a path that cannot be written is one line, nothing started
        check_output("--record", a.record)
    except OSError as e:
        return fail(PROG, str(e))
    if a.status_url == "none":
        a.status_url = None
    elif a.status_url != "auto" and not a.status_url.startswith(("http://", "https://")):
        return fail(PROG, f"--status-url {a.status_url!r}: give an http:// URL, auto or none")
    elif a.status_url != "auto" and not a.allow_remote:
        host = urlsplit(a.status_url).hostname or ""
        if loopback_address(host) is None:
            return fail(PROG, "--status-url: " + refusal("ask", repr(host or a.status_url)))
    if sys.stderr.isatty() and starts_bpftrace(a.exact_accepts):
        # bpftrace compiles its probes before the first sample: 2.4 s at a load of 4.5,
        # 9-14 s at 7-13 (an attach's start seen by a review); a blank terminal reads as a hang
        print(
            f"{PROG}: starting bpftrace for exact accepts and queue wait (a few seconds; "
            "--estimate-accepts starts at once)",
            file=sys.stderr,
        )
    try:
        att = Attachment.open(
            pid=a.pid,
            port=a.port,
            status_url=a.status_url,
            exact_accepts=a.exact_accepts,
            window_s=a.window,
            period=a.period,
            netns=a.netns,
            # stuck workers' stacks, taken by themselves (not in a one-shot look)
            autocapture=None if a.once else AutoCapture(stuck_from_args(a)),
        )
    except AttachError as e:
        return fail(PROG, str(e), EXIT_FAILED)
    if att.not_a_server:  # said, not refused: its CPU and states are still shown
        print(f"{PROG}: {att.not_a_server}", file=sys.stderr)
    exporter = None
    try:
        exporter = export.from_args(a, PROG)
        if a.load:
            att.start_load(preset(a.load))
    except BaseException as e:  # Ctrl-C too: what was started is stopped
        att.close()  # the sampler's bpftrace child, when counting exact accepts
        if exporter is not None:
            exporter.close()
        if isinstance(e, (export.ExportError, LoadError)):
            return fail(PROG, str(e), EXIT_USAGE)
        raise
    if a.record:
        att.record(a.record)
    if exporter is not None:
        att.watch.observers.append(exporter.update)
    try:
        if exporter is not None and a.no_ui:
            print(f"{PROG}: exporting on {exporter.url}", file=sys.stderr)
        if a.once:
            return _once(att.watch, a)
        if not (a.table or a.json or a.no_ui):
            from tui.app import run_attach  # late: Textual loads only when a TUI opens

            return run_attach(att, threads=a.threads)
        with stop_on(threading.Event()) as stop:
            return _live(att.watch, a, stop)
    except RuntimeError as e:  # the target exited
        return fail(PROG, str(e), EXIT_FAILED)
    except KeyboardInterrupt:  # --once, whose wait is short
        return EXIT_OK
    finally:
        att.close()
        if exporter is not None:
            exporter.close()


def _once(watch: Watch, a: argparse.Namespace) -> int:
    """Samples every --period until ONCE_SPAN_S of them are covered (the CPU % and every
    diagnosis rule have what they need), then prints the last one (the one recorded and
    exported)."""
    snap = watch.settle(ONCE_SPAN_S, a.period)
    if snap is None:
        return EXIT_OK
    if a.json:
        print(json.dumps(snap.to_dict()))
    else:
        from rich.console import Console

        from text.attach import render, wanted_width

        console = fit_console(Console(), a.width, lambda: wanted_width(snap, threads=a.threads))
        console.print(render(snap, threads=a.threads))
    return EXIT_OK


def _live(watch: Watch, a: argparse.Namespace, stop: threading.Event) -> int:
    """Sample every --period until Ctrl-C or SIGTERM, each snapshot printed as JSON
    (--json), drawn in the rich table (--table), or only recorded and exported (--no-ui)."""
    if a.json:

        def print_json(snap: Snapshot) -> None:
            print(json.dumps(snap.to_dict()), flush=True)

        watch.observers.append(print_json)
    if a.json or a.no_ui:
        watch.run(a.period, stop)
        return EXIT_OK
    from rich.console import Console, RenderableType
    from rich.live import Live

    from text.attach import render, wanted_width

    console = Console()

    def table(snap: Snapshot) -> RenderableType:
        fit_console(console, a.width, functools.partial(wanted_width, snap, threads=a.threads))
        return render(snap, threads=a.threads)

    if not console.is_terminal:
        # into a pipe or file, each sample's table follows the last (as `top -b` does): a
        # Live redraws in place and writes nothing until it stops, so `| head` never ended

        def print_table(snap: Snapshot) -> None:
            console.print(table(snap))
            console.file.flush()

        watch.observers.append(print_table)
        watch.run(a.period, stop)
        return EXIT_OK
    with Live(console=console, auto_refresh=False, screen=False) as live:
        watch.observers.append(lambda snap: live.update(table(snap), refresh=True))
        watch.run(a.period, stop)
    return EXIT_OK
