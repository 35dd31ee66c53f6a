"""The text surfaces on real servers' shapes: `run`'s per-worker table on an original
(unknown requests, workers counted as workers), `attach --once` and the headless demo at
80 columns and piped into a file (every column readable, every step kept)."""

from __future__ import annotations

import io

from rich.console import Console

import tui_scenarios
from lab.aggregate import SummaryBuilder
from loadgen.levels import PRESETS
from text.attach import render
from text.summary import render_summary
from values.snapshot import Snapshot


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


# -- finding 13: headless and piped output --------------------------------------------------


def _attached() -> Snapshot:
    return tui_scenarios.attached_nginx_reuseport_stopped()[-1]


def test_attach_tables_at_80_columns_keep_whole_columns_not_squeezed_ones() -> None:
    """At 80 columns the workers table read "wor… 144… ki… sta…": every column squeezed."""
    text = _printed(lambda c: c.print(render(_attached())), width=80)
    workers = text[text.index("workers") :]
    assert "…" not in text, text
    assert max(map(len, text.splitlines())) <= 80
    for column in ("worker", "pid", "state", "CPU %", "conns", "acc total"):
        assert column in workers, workers
    assert "K keepalive" in workers and "T stopped" in workers, workers
    assert "left out to fit: tid, kind" in " ".join(workers.split()), workers


def test_attach_once_piped_is_as_wide_as_its_tables(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Piped, rich drew at 80 columns: the same squeezed table in a file."""
    import argparse

    from commands import attach as attach_command
    from lab.watch import Watch

    snap = _attached()

    class Sampler:
        def sample(self) -> Snapshot:
            return snap

    a = argparse.Namespace(period=0.0, json=False, threads=False, width=None)
    assert attach_command._once(Watch(Sampler()), a) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "…" not in out and "left out" not in out, out
    for column in ("tid", "kind", "RSS MiB", "thr", "req total", "source", "address"):
        assert column in out, out
    assert max(map(len, out.splitlines())) > 80
    a.width = 70  # --width: as asked
    attach_command._once(Watch(Sampler()), a)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 70 and "…" not in out, out


def test_a_headless_demo_in_a_file_keeps_every_step(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Redirected to a file, the live view kept only the last step's frame."""
    from commands import demo as demo_command
    from lab.catalogue import get
    from lab.player import StepResult

    scenario = get("skew")
    frames = {0: tui_scenarios.many_accepts_burst(), 1: tui_scenarios.many_accepts_burst()}

    def play(scenario, *, on_step, on_sample, stop):  # type: ignore[no-untyped-def]
        results = []
        for i, step in enumerate(scenario.steps):
            on_step(i, step)
            for k, snap in enumerate(frames[i][-3:]):
                on_sample(i, snap, float(k))
            results.append(StepResult(step, i, seen={"accept_skew": 1.0}))
        return results

    monkeypatch.setattr(demo_command, "play", play)
    out = io.StringIO()
    console = Console(file=out, color_system=None)  # a file: not a terminal
    demo_command.play_live(scenario, console)
    text = out.getvalue()
    for i, step in enumerate(scenario.steps):
        assert f"step {i + 1}/{len(scenario.steps)}: {step.title}" in text, text
    assert text.count("workers") >= 2 and "…" not in text, text
    assert max(map(len, text.splitlines())) > 80  # as wide as the tables


def test_attach_imbalance_says_what_each_index_is_over_and_when_too_few_to_judge() -> None:
    """'connections: Jain 0.50 top 50%' over one open connection read as a skew; each
    index now says its base, and one resting on too few events says so (the TUI leaves
    it uncoloured: judging.skew.enough_to_judge)."""
    from judging.skew import enough_to_judge
    from values.findings import Imbalance, ImbalanceSet

    snap = _attached()
    few = Imbalance("connections", 5.0, 2, 1.0, jain=0.5, top_share=1.0, max_over_mean=2.0)
    many = Imbalance("accepts", 5.0, 4, 400.0, jain=0.41, top_share=0.71, max_over_mean=2.84)
    assert not enough_to_judge("connections", few) and enough_to_judge("accepts", many)
    snap = Snapshot(
        **{
            **{f: getattr(snap, f) for f in snap.__slots__},
            "imbalance": ImbalanceSet(accepts=many, connections=few),
        }
    )
    line = " ".join(_printed(lambda c: c.print(render(snap)), width=200).split())
    assert "accepts: Jain 0.41 top 71% max/mean 2.8 (400 accepts) " in line, line
    assert "connections: Jain 0.50 top 100% max/mean 2.0 (1.0 open: too few to judge)" in line
