"""`serverscope diff BEFORE.jsonl AFTER.jsonl`: two recordings (`--record FILE` of the TUI,
`run`, `attach` or `fix`) side by side, each difference with its evidence
(judging.verdict), as a table, JSON and an SVG chart."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from values.codec import FormatError

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_width_arg,
    check_output,
    console_for_output,
    fail,
    fit_console,
)

if TYPE_CHECKING:  # numpy loads with the verdict, not with every serverscope command
    from judging.verdict_values import Verdict

PROG = "serverscope diff"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "diff",
        help="compare two recordings: what changed, and whether chance could have made it",
        description="Read two recordings (--record FILE of the lab, run, attach or fix) and "
        "print their figures side by side: throughput, latency percentiles, accept and CPU "
        "imbalance, accept queue, queue wait, in-server wait and service p99, time in each "
        "diagnosis. Each difference gets a 95%% interval (a bootstrap of windows) and a "
        "p-value (a permutation test over windows of samples that no longer correlate), "
        "adjusted for the number of figures compared (Holm); a difference counts at "
        "p < 0.01.",
    )
    p.add_argument("before", help="the recording before the change")
    p.add_argument("after", help="the recording after the change")
    p.add_argument("--json", metavar="FILE", help="write the verdict as JSON to FILE (- : stdout)")
    p.add_argument("--svg", metavar="FILE", help="draw the comparison as an SVG chart in FILE")
    add_width_arg(p)
    return p


def judge_or_fail(before: str, after: str) -> Verdict | str:
    """The verdict, or the one line that says why there is none."""
    from judging.verdict import judge_files

    try:
        return judge_files(before, after)
    except FormatError as e:
        return str(e)
    except OSError as e:
        return f"{e.filename or before}: {e.strerror or e}"
    except ValueError as e:  # too short to judge
        return str(e)


def write_outputs(v: Verdict, json_path: str | None, svg_path: str | None, title: str) -> None:
    """The JSON (to stdout for '-') and the SVG; OSError as open gives it."""
    from text.verdict_chart import write_svg

    if svg_path:
        write_svg(svg_path, v, title)
    if json_path == "-":
        json.dump(v.to_json_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(v.to_json_dict(), f, indent=2)
            f.write("\n")


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def command(a: argparse.Namespace) -> int:
    try:
        if a.json != "-":
            check_output("--json", a.json)
        check_output("--svg", a.svg)
    except OSError as e:
        return fail(PROG, str(e), EXIT_USAGE)
    v = judge_or_fail(a.before, a.after)
    if isinstance(v, str):
        return fail(PROG, v, EXIT_USAGE)
    if same_file(a.before, a.after):  # said, not refused: its "no difference" proves nothing
        print(f"{PROG}: {a.before} and {a.after} are the same recording", file=sys.stderr)
    if a.json != "-":  # (JSON on stdout is all stdout holds)
        from text.verdict import render

        console = fit_console(console_for_output(), a.width, lambda: 140)
        render(console, v)
    try:
        write_outputs(v, a.json, a.svg, f"serverscope diff: {v.before.name} -> {v.after.name}")
    except OSError as e:
        return fail(PROG, f"cannot write {e.filename}: {e.strerror}", EXIT_FAILED)
    if a.svg and a.json != "-":
        print(f"chart saved to {a.svg}")
    return EXIT_OK
