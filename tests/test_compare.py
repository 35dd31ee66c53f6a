"""`serverscope compare`: configs per model, the SVG chart, and a short real comparison."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from commands import compare
from lab.summary import RunSummary, WorkerTotals
from loadgen.levels import PRESETS
from servers.config import ConfigError, ServerConfig
from text import chart

SRC = str(Path(__file__).resolve().parents[1] / "src")
SVG = "{http://www.w3.org/2000/svg}"


def _summary(model: str, accepts: list[int]) -> RunSummary:
    s = RunSummary(model=model, model_detail=model, level=PRESETS["burst"])
    s.workers = [
        WorkerTotals(f"worker {i}", i, 100 + i, 100 + i, "process", 1, accepts=a)
        for i, a in enumerate(accepts)
    ]
    total = sum(accepts)
    s.accept_top_share = max(accepts) / total if total else None
    s.accept_jain = total**2 / (len(accepts) * sum(a * a for a in accepts)) if total else None
    return s


def test_config_for_leaves_knobs_a_model_lacks_at_their_default() -> None:
    base = ServerConfig(model="cluster", workers=3, exclusive=True, backlog=64)
    cfg, dropped = compare.config_for("single", base)
    assert cfg.model == "single" and cfg.workers is None and not cfg.exclusive
    assert cfg.backlog == 64  # common knobs always apply
    assert dropped == ["--workers", "--exclusive"]
    cfg, dropped = compare.config_for("many_accepts", base)
    assert (cfg.workers, cfg.exclusive, dropped) == (3, True, [])


def test_parse_models() -> None:
    assert compare.parse_models("single, cluster") == ["single", "cluster"]
    for bad in ("", "single,nosuch", "single,single"):
        with pytest.raises(ConfigError):
            compare.parse_models(bad)


def test_chart_is_valid_svg_with_a_bar_per_model_and_a_segment_per_worker() -> None:
    summaries = [_summary("many_accepts", [97, 2, 1, 0]), _summary("cluster<&>", [25] * 4)]
    text = chart.chart_svg(summaries, PRESETS["burst"])
    root = ET.fromstring(text)  # well-formed, names escaped
    assert root.tag == f"{SVG}svg"
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for word in ("throughput", "p99 latency", "top share of accepts", "cluster<&>", "Jain 0.27"):
        assert word in texts, word
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    # 3 panels x 2 models, then 3 + 4 worker segments (a worker with no accepts has none)
    assert len(titles) == 6 + 3 + 4
    assert "worker 0: 97.0%" in titles


def test_chart_copes_with_a_model_that_accepted_nothing() -> None:
    text = chart.chart_svg([_summary("single", [0])], PRESETS["burst"])
    assert "no accepts counted" in text
    ET.fromstring(text)


def test_compare_command_runs_each_model_and_saves_the_chart(tmp_path: Path) -> None:
    svg, out = tmp_path / "c.svg", tmp_path / "c.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "serverscope",
            "compare",
            "--models",
            "single,many_accepts",
            "--workers",
            "2",
            "--load",
            "storm",
            "--duration",
            "1.5",
            "--svg",
            str(svg),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert p.returncode == 0, p.stderr + p.stdout
    assert "single: has no --workers" in p.stdout
    assert "many_accepts (workers=2)" in p.stdout and "req/s" in p.stdout, p.stdout
    ET.fromstring(svg.read_text())
    data = json.loads(out.read_text())
    assert [m["model"] for m in data["models"]] == ["single", "many_accepts"]
    assert all(m["rps"] > 0 for m in data["models"])
    assert len(data["models"][1]["workers"]) == 2


def test_compare_does_the_fault_in_each_models_run(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "serverscope", "compare", "--models", "reuseport"]
    argv += ["--workers", "2", "--load", "steady", "--duration", "1.5", "--fault", "pause:1@0.5"]
    argv += ["--svg", str(tmp_path / "c.svg"), "--json", str(out)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env)
    assert p.returncode == 0, p.stderr + p.stdout
    (model,) = json.loads(out.read_text())["models"]
    (done,) = model["faults"]
    m = re.fullmatch(r"pause worker 1 \(pid (\d+)\) at (\d+\.\d+) s", done)
    assert m and int(m[1]) == model["workers"][1]["pid"] and 0.5 <= float(m[2]) < 1.5, done
    assert f"reuseport: {done}" in p.stdout and "not done" not in p.stdout


def test_compare_refuses_an_unknown_model_before_running_anything() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run(
        [sys.executable, "-m", "serverscope", "compare", "--models", "single,nosuch"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert p.returncode == 2 and "unknown model 'nosuch'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def _with_phases(s: RunSummary, queue: float | None, server: float | None, service: float):
    import synthetic

    s.queue_wait = None if queue is None else synthetic.hist(queue, 50)
    s.server_wait = None if server is None else synthetic.hist(server, 50)
    s.service = synthetic.hist(service, 50)
    return s


def test_chart_shows_each_model_s_phases_and_says_which_were_not_measured() -> None:
    summaries = [
        _with_phases(_summary("prefork", [25] * 4), 4200.0, 0.05, 2.0),
        _summary("nginx", [50, 50]),  # attached: nothing measured
        _with_phases(_summary("cluster", [25] * 4), None, 12.0, 1.0),
    ]
    root = ET.fromstring(chart.chart_svg(summaries, PRESETS["burst"]))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert any(t.startswith("where the time went") for t in texts)
    assert texts.count("not measured") == 3 + 1  # nginx's three, cluster's queue wait
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert "prefork: queue wait p50 4.2 s, p99 4.2 s, max 4.2 s" in titles
    assert "cluster: in-server wait p50 12 ms, p99 12 ms, max 12 ms" in titles
    # log scale: prefork's 4.2 s queue-wait bar is longer than its 2 ms service bar
    widths = {
        t.text.split(" p50")[0]: float(r.get("width") or 0)
        for r in root.iter(f"{SVG}rect")
        for t in r.iter(f"{SVG}title")
        if t.text and " p50 " in t.text
    }
    assert widths["prefork: queue wait"] > widths["prefork: service"] > 0


def test_compare_prints_the_phases_in_a_table_of_their_own_unknown_where_unmeasured() -> None:
    from rich.console import Console

    from text.compare import phases_table

    assert phases_table([_summary("nginx", [1])]) is None  # nothing measured: no table
    t = phases_table(
        [
            _with_phases(_summary("prefork", [1]), 4200.0, 0.05, 1.5),
            _with_phases(_summary("cluster", [1]), None, 12.0, 1.5),
        ]
    )
    assert t is not None
    console = Console(record=True, width=100)
    console.print(t)
    out = console.export_text()
    prefork = next(line for line in out.splitlines() if "prefork" in line)
    cluster = next(line for line in out.splitlines() if "cluster" in line)
    assert "4.2 s / 4.2 s" in prefork and "50 µs / 50 µs" in prefork and "1.5 ms" in prefork
    assert "unknown" in cluster and "12 ms / 12 ms" in cluster
