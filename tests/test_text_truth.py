"""The text surfaces on real servers' shapes: `run`'s per-worker table on an original
(unknown requests, workers counted as workers), `attach --once` and the headless demo at
80 columns and piped into a file (every column readable, every step kept)."""

from __future__ import annotations

import io

from rich.console import Console

import tui_scenarios
from lab.aggregate import SummaryBuilder
from loadgen.levels import PRESETS
from text.summary import render_summary


def _printed(render, width: int = 120) -> str:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    render(Console(file=out, width=width, color_system=None, legacy_windows=False))
    return out.getvalue()


def test_run_on_an_original_shows_unknown_requests_and_counts_workers_only() -> None:
    """apache:worker as an original: the per-worker table said `requests 0` for each
    worker (it served thousands) and "the 16 busiest of 113 workers" for 4 children, their
    108 threads and the master."""
    builder = SummaryBuilder("apache:worker", "apache:worker", PRESETS["burst"])
    for seq in (1, 2, 3):
        builder.add(tui_scenarios.original_apache_worker(seq=seq, time=1000.0 + seq))
    s = builder.finish(None, duration_s=2.0, load_error="(no load in this test)")
    assert [w.requests for w in s.workers if w.role == "worker"] == [None] * 4
    assert s.to_json_dict()["workers"][1]["requests"] is None
    text = _printed(lambda c: render_summary(c, s, max_workers=3))
    table = text[text.index("per worker") :]
    assert " 0 " not in table.replace("0.00", ""), table  # no requests of 0
    assert "requests per worker: unknown" in table, table
    assert "the 3 busiest of 4 workers" in table, table
    assert "the master (pid 1000)" in table and "108 threads of the worker processes" in table
    assert "(thread)" not in table and "(master)" not in table, table
