"""bench/performance.py, the runner behind docs/performance.md: it keeps each bench's
markdown tables, says plainly when a bench is missing or fails, and rewrites only the
page's performance block. No bench is timed here (speed goals live in bench/)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
PAGE = BENCH.parent / "docs" / "performance.md"


@pytest.fixture
def perf(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("performance", None)
    return importlib.import_module("performance")


TABLE = "| a | b |\n|---|---:|\n| x | 1 |"


def test_the_runner_keeps_every_markdown_table_and_drops_the_rest(perf) -> None:  # type: ignore[no-untyped-def]
    other = "| c |\n|:--|\n| y |\n| z |"
    out = f"starting\n> peers: x 1.0\n{TABLE}\nnoise | not a table\n\n{other}\n\n| only | header |"
    assert perf.tables(out) == ["> peers: x 1.0", TABLE, other]


def test_a_missing_bench_is_said_not_run(perf, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(perf, "HERE", tmp_path)
    text, _ = perf.run(perf.Bench("x", "Something", "bench_absent.py"))
    assert text.startswith("### Something")
    assert "**not run**: bench/bench_absent.py does not exist" in text


def test_a_failing_bench_shows_its_tables_and_says_it_failed(perf, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "bench_fails.py"
    script.write_text(
        f"import sys\nprint({TABLE!r})\nprint('boom', file=sys.stderr)\nsys.exit(3)\n"
    )
    monkeypatch.setattr(perf, "HERE", tmp_path)
    text, _ = perf.run(perf.Bench("f", "Fails", "bench_fails.py", ("--x",)))
    assert "`.venv/bin/python bench/bench_fails.py --x`" in text
    assert TABLE in text
    assert "**failed** (exit code 3): boom" in text


def test_a_bench_without_a_table_is_shown_as_its_raw_output(perf, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bench_plain.py").write_text("print('figure 1.5 ms (goal <= 2 ms)')\n")
    monkeypatch.setattr(perf, "HERE", tmp_path)
    text, _ = perf.run(perf.Bench("p", "Plain", "bench_plain.py"))
    assert "```\nfigure 1.5 ms (goal <= 2 ms)\n```" in text
    assert "failed" not in text


def test_the_performance_page_has_one_block_under_the_run() -> None:
    text = PAGE.read_text()
    begin, end = "<!-- performance -->", "<!-- /performance -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    section = text.index("## The run\n")
    after = text.index("## What limits each model\n")
    assert section < text.index(begin) < text.index(end) < after


@pytest.mark.parametrize("option", ["--doc", "--readme"])
def test_doc_option_rewrites_only_the_block(perf, tmp_path, monkeypatch, option) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bench_t.py").write_text(f"print({TABLE!r})\n")
    monkeypatch.setattr(perf, "HERE", tmp_path)
    monkeypatch.setattr(perf, "BENCHES", (perf.Bench("t", "T", "bench_t.py"),))
    page = tmp_path / "performance.md"
    page.write_text("# top\n<!-- performance -->\nold figures\n<!-- /performance -->\ntail\n")
    monkeypatch.setattr(sys, "argv", ["performance.py", option, str(page)])
    assert perf.main() == 0
    text = page.read_text()
    assert text.startswith("# top\n<!-- performance -->\nMeasured on ")
    assert "old figures" not in text
    assert "### T" in text and TABLE in text
    assert text.endswith("<!-- /performance -->\ntail\n")


def test_each_model_is_held_against_the_original_it_copies(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    from originals.registry import spec

    bench = importlib.import_module("bench_originals")
    pairs = bench.pairs(2)
    assert {p.original for p in pairs} == {
        "node:many_accepts",
        "node:simple_cluster",
        "go:server",
        "c:single",
        "c:proc_spawn",
        "apache:prefork",
        "apache:worker",
        "apache:event",
    }
    for p in pairs:
        assert spec(p.original).twin == p.model


def test_the_verdict_names_what_the_cpu_per_request_shows(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    b = importlib.import_module("bench_originals")
    by = {p.model: p for p in b.pairs(2)}
    c_like = b.Measure(10_000, 50_000, user_us=3, sys_us=12, cores=0.3)
    python = b.Measure(7_000, 35_000, user_us=25, sys_us=12, cores=0.4)
    assert b.verdict(by["proc_spawn"], python, c_like).startswith("Python per request (user 25")
    assert b.verdict(by["goroutines"], python, c_like).startswith("the GIL")
    assert "sets its pace" in b.verdict(by["single"], python, c_like)
    kernel = b.Measure(7_000, 35_000, user_us=8, sys_us=30, cores=0.4)
    assert b.verdict(by["prefork"], kernel, c_like).startswith("the kernel")
    cheap = b.Measure(7_000, 35_000, user_us=3, sys_us=30, cores=0.4)
    assert b.verdict(by["prefork"], cheap, c_like).startswith("the CPU it shares with wrk")
