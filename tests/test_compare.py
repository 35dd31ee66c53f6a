"""`serverscope compare`: configs per model, the SVG chart, and a short real comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from commands import chart, compare
from lab.summary import RunSummary, WorkerTotals
from loadgen.levels import PRESETS
from servers.config import ConfigError, ServerConfig

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
