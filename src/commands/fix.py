"""`serverscope fix`: run a setup, then its remedy for the diagnosis the run showed, under
the same load (a fresh server each), both recorded; print the two side by side with the
verdict (lab.fix, judging.verdict: the same engine as `serverscope diff`)."""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.fix import REMEDIES, Outcome, run_fix
from lab.server import ServerConfig, model_spec
from lab.summary import RunSummary
from loadgen.levels import LoadError, LoadLevel
from plumbing.signals import stop_on

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

PROG = "serverscope fix"
BEFORE, AFTER = "serverscope-fix-before.jsonl", "serverscope-fix-after.jsonl"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fix",
        help="run a setup and its remedy under the same load; before and after, with a verdict",
        description="Run the model under the load, find the diagnosis it shows (accept skew, "
        "starvation, accept queue overflow, a master bottleneck, the GIL cap), then run its "
        "remedy under the same load for as long (a fresh server each), both recorded, and "
        "print the two side by side: each difference with its 95% interval and p-value "
        "(as `serverscope diff` gives them for the two recordings). Exit status 1 when "
        "there is nothing to fix or a run failed.",
    )
    p.add_argument("--model", help="model name (see `serverscope serve --list`)")
    add_load_args(p)
    p.add_argument("--remedy", help="run this remedy (see --list) whatever the run shows")
    common.add_fault_arg(p, "in both runs")
    p.add_argument("--list", action="store_true", help="list the remedies and exit")
    p.add_argument("--before", metavar="FILE", default=BEFORE, help=f"record to ({BEFORE})")
    p.add_argument("--after", metavar="FILE", default=AFTER, help=f"record to ({AFTER})")
    p.add_argument("--json", metavar="FILE", help="write both runs and the verdict as JSON")
    p.add_argument("--svg", metavar="FILE", help="draw the comparison as an SVG chart in FILE")
    add_model_args(p)
    return p


def remedies_table() -> Table:
    t = Table(title="remedies by diagnosis (the first that applies is tried)", title_justify="left")
    for c in ("diagnosis", "--remedy", "what it changes"):
        t.add_column(c, no_wrap=c != "what it changes")
    for r in REMEDIES:
        t.add_row(r.rule, r.name, r.does)
    return t


def load_level(a: argparse.Namespace) -> LoadLevel:
    return level_from_args(a)


def command(a: argparse.Namespace) -> int:
    console = console_for_output()
    if a.list:
        console.print(remedies_table())
        return EXIT_OK
    if not a.model:
        return fail(PROG, "--model is required (or --list)", EXIT_START)
    try:
        level = load_level(a)
        for option in ("before", "after", "json", "svg"):
            check_output(f"--{option}", getattr(a, option))
        if a.before == a.after:
            raise OSError("--before and --after name the same file")
        config = config_from_args(a.model, a)
        resolved = model_spec(config.model).resolve(config)  # a knob out of range: here
        if a.remedy and a.remedy not in {r.name for r in REMEDIES}:
            names = ", ".join(dict.fromkeys(r.name for r in REMEDIES))
            raise ValueError(f"--remedy {a.remedy!r} is not a remedy; choose from: {names}")
        fault = common.fault_from_args(a, level, resolved)
    except (LoadError, OSError, ValueError) as e:
        return fail(PROG, str(e), EXIT_START)

    def run(cfg: ServerConfig, record: str, title: str) -> RunSummary:
        summary = progress_run(
            console,
            cfg,
            level,
            title=title,
            period=a.period,
            record=record,
            stop=stop,
            faults=(fault,) if fault else (),
        )
        _ran(console, title, summary)
        return summary

    with stop_on(threading.Event()) as stop:
        out = run_fix(config, level, (a.before, a.after), run, remedy=a.remedy, fault=fault)
    show(console, out)
    try:
        if a.json:
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump(out.to_json_dict(), f, indent=2)
                f.write("\n")
        if a.svg and out.verdict is not None:
            from text.verdict_chart import write_svg

            write_svg(a.svg, out.verdict, f"serverscope fix: {_title(out)}")
            console.print(f"chart saved to {a.svg}")
    except OSError as e:
        return fail(PROG, f"cannot write {e.filename}: {e.strerror}", EXIT_FAILED)
    return EXIT_OK if out.ok else EXIT_FAILED


def _ran(console: Console, title: str, s: RunSummary) -> None:
    seen = ", ".join(f"{d.rule} ({d.samples} samples)" for d in s.diagnoses) or "none"
    did = "".join(f"; {line}" for line in s.faults)
    console.print(
        f"{title}: {s.model_detail}, {s.rps:,.0f} req/s, {s.samples} samples; "
        f"diagnoses: {seen}{did}"
    )


def _title(out: Outcome) -> str:
    r = out.remedy
    return f"{out.before_config.model} -> {r.name}" if r else out.before_config.model


def show(console: Console, out: Outcome) -> None:
    """The diagnosis, the remedy, the table and the verdict (or why there is none)."""
    if out.diagnosis:
        console.print(Text(f"diagnosis ({out.rule}): {out.diagnosis}", style="yellow"))
    if out.remedy is not None:
        after = out.after.model_detail if out.after else out.remedy.name
        console.print(Text(f"remedy: {out.remedy.name}: {out.remedy.does} ({after})"))
    if out.fault is not None:
        console.print(Text(f"fault, in both runs: {out.fault.describe()} into the load"))
    if out.verdict is not None:
        from text.verdict import render

        render(console, out.verdict, headline_keys=out.remedy.watch if out.remedy else ())
    for note in out.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    for problem in out.problems:
        console.print(Text(f"{PROG}: {problem}", style="bold red"))
    if out.after is not None:
        console.print(
            f"recordings: {out.paths[0]}, {out.paths[1]} "
            f"(serverscope diff {out.paths[0]} {out.paths[1]})"
        )
