"""`serverscope seed`: the seed's claims, each measured on the original (C, Node, Go,
Apache, for real) and on its Python model; one table, an SVG of it, and the time it took.
The experiments and the judgement are `lab.seed`'s; the drawing is `text.seed`'s."""

from __future__ import annotations

import argparse
from typing import Any

from lab.seed import KEYS, ClaimResult, claims, run_claims
from text.seed import DEFAULT_SVG, svg, table, verdict

from .common import EXIT_FAILED, EXIT_OK, EXIT_START, check_output, console_for_output, fail

PROG = "serverscope seed"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "seed",
        help="measure the seed's claims on the originals and the Python models",
        description="Run each claim of the seed (balancing, starvation, cores, backlog) as a "
        "small bounded experiment on the original and on its Python model, and print one "
        "table: the claim, each figure with its source, confirmed or not. About a minute "
        "on 2 cores.",
    )
    p.add_argument("--only", metavar="CLAIM", action="append", default=[],
                   help=f"run only this claim (repeatable): {', '.join(KEYS)}")  # fmt: skip
    p.add_argument("--budget", type=float, default=240.0, metavar="SECONDS",
                   help="start no claim after this many seconds (240)")  # fmt: skip
    p.add_argument(
        "--svg", metavar="FILE", default=DEFAULT_SVG, help=f"table as SVG ({DEFAULT_SVG})"
    )
    return p


def command(a: argparse.Namespace) -> int:
    if a.budget <= 0:
        return fail(PROG, f"--budget must be > 0 seconds, not {a.budget:g}", EXIT_START)
    try:
        check_output("--svg", a.svg)
    except OSError as e:
        return fail(PROG, str(e), EXIT_START)
    selected = claims(a.only)  # ConfigError: one line (main)
    console = console_for_output()

    def progress(r: ClaimResult) -> None:
        console.print(f"{r.claim.key}: {verdict(r)} ({r.seconds:.1f} s)")

    run = run_claims(selected, budget=a.budget, on_result=progress)
    console.print(table(run))
    if run.skipped:
        console.print(f"[yellow]not run (time bound {a.budget:g} s): {', '.join(run.skipped)}[/]")
    console.print(f"the whole run took {run.seconds:.0f} s")
    try:
        with open(a.svg, "w", encoding="utf-8") as f:
            f.write(svg(run.results, run.seconds))
    except OSError as e:
        return fail(PROG, f"cannot write {a.svg}: {e.strerror}", EXIT_FAILED)
    console.print(f"table saved to {a.svg}")
    return EXIT_OK if run.results and not run.skipped else EXIT_FAILED
