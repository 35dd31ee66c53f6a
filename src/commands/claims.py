"""`serverscope claims`: the field's published claims about balancing (Cloudflare 2017,
Node's cluster docs, Herbert's SO_REUSEPORT commit, puma #3969, envoy's exact_balance),
each measured on the lab's models under a bounded load; one row each: the source, the
published figure, ours, confirmed or not and why. The experiments are `lab.claims`'."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table
from rich.text import Text

from lab import claims as lab_claims
from lab.claims import ClaimRow, ClaimsRun

from .common import EXIT_FAILED, EXIT_OK, EXIT_START, check_output, console_for_output, fail

PROG = "serverscope claims"
BUDGET = 60.0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "claims",
        help="measure the field's published claims about balancing on the lab's models",
        description="Run each published claim (Cloudflare 2017, Node's cluster docs, "
        "Herbert's SO_REUSEPORT commit, puma #3969, envoy exact_balance) as a small "
        "bounded experiment comparing two setups, and print one row each: the source, "
        "the published figure, ours, and confirmed or not with why. About 45 s on 2 cores.",
    )
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    keys = ", ".join(lab_claims.KEYS)
    p.add_argument("--only", metavar="CLAIM", action="append", default=[],
                   help=f"run only this claim (repeatable): {keys}")  # fmt: skip
    p.add_argument("--budget", type=float, default=BUDGET, metavar="SECONDS",
                   help=f"start no claim that would end past it ({BUDGET:g} s)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    return p


def verdict(row: ClaimRow) -> Text:
    c = row.outcome.confirmed
    if c is None:
        return Text("not measured", style="yellow")
    return Text("confirmed", style="green") if c else Text("not confirmed", style="red")


def table(run: ClaimsRun) -> Table:
    t = Table(title="the field's claims, measured here", title_justify="left", show_lines=True)
    for name in ("claim", "source", "published", "ours", "result"):
        t.add_column(name, no_wrap=name == "claim", ratio=None if name == "claim" else 1)
    for r in run.rows:
        result = verdict(r).append(f": {r.outcome.why}", style="")
        t.add_row(r.claim.key, r.claim.source, r.claim.published, r.outcome.ours, result)
    return t


def listing() -> Table:
    t = Table(title="claims (--only KEY)", title_justify="left")
    for name in ("claim", "source", "published", "what runs here", "about"):
        t.add_column(name, no_wrap=name in ("claim", "about"))
    for c in lab_claims.CLAIMS:
        t.add_row(c.key, c.source, c.published, c.setups, f"{c.seconds:g} s")
    return t


def to_json(run: ClaimsRun) -> dict[str, Any]:
    return {
        "seconds": round(run.seconds, 1),
        "skipped": run.skipped,
        "claims": [
            {
                "claim": r.claim.key,
                "source": r.claim.source,
                "published": r.claim.published,
                "setups": r.claim.setups,
                "ours": r.outcome.ours,
                "confirmed": r.outcome.confirmed,
                "why": r.outcome.why,
                "seconds": round(r.seconds, 1),
            }
            for r in run.rows
        ],
    }


def command(a: argparse.Namespace) -> int:
    console = console_for_output()
    if a.list:
        console.print(listing())
        return EXIT_OK
    if not a.budget > 0:
        return fail(PROG, f"--budget must be more than 0 seconds, got {a.budget:g}", EXIT_START)
    if a.json:
        try:
            check_output("--json", a.json)
        except OSError as e:
            return fail(PROG, str(e), EXIT_START)
    selected = lab_claims.select(a.only)  # ConfigError: one line (main)

    def progress(r: ClaimRow) -> None:
        console.print(f"{r.claim.key}: {verdict(r).plain} ({r.seconds:.1f} s)")

    run = lab_claims.run(selected, budget=a.budget, on_row=progress)
    console.print(table(run))
    if run.skipped:
        console.print(f"[yellow]not run (budget {a.budget:g} s): {', '.join(run.skipped)}[/]")
    console.print(f"the whole run took {run.seconds:.0f} s")
    if a.json:
        try:
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump(to_json(run), f, indent=1)
        except OSError as e:
            return fail(PROG, f"cannot write {a.json}: {e.strerror}", EXIT_FAILED)
    measured = run.rows and all(r.outcome.confirmed is not None for r in run.rows)
    return EXIT_OK if measured and not run.skipped else EXIT_FAILED
