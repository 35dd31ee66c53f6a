"""docs/fleet.md as a reader follows it: every `serverscope` command on the page runs as
written (tests/fleet_docs_driver.py, in a network namespace of the test's making, so the
page's ports are free), and its Prometheus files pass `promtool`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_all_gone

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool: apt-get install prometheus"
)


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "fleet-rules.yml"],
        ["test", "rules", "fleet-rules.test.yml"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_the_docs_prometheus_files_pass_promtool(args: list[str]) -> None:
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, *args], cwd=DOCS, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_the_page_shows_the_scrape_config_as_the_file_has_it() -> None:
    page = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", page, re.S)
    config = (DOCS / "prometheus.yml").read_text(encoding="utf-8")
    body = "".join(line + "\n" for line in config.splitlines() if not line.startswith("#"))
    assert body in blocks


def run_page(page: str) -> dict[str, str]:
    """The page's commands run by the driver in a namespace of their own; what each ran as."""
    out = subprocess.run(
        [
            "unshare",
            "--net",
            "--",
            sys.executable,
            str(ROOT / "tests" / "fleet_docs_driver.py"),
            page,
        ],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=ROOT,
    )
    if "unshare failed" in out.stderr:
        pytest.skip(f"cannot make a network namespace here: {out.stderr.strip()}")
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr
    report = json.loads(lines[-1])
    assert report["error"] is None and out.returncode == 0, (report["error"], out.stderr[-2000:])
    assert_all_gone(report["pids"])
    return {r["command"]: r["as"] for r in report["ran"]}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="apt-get install prometheus")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="apt-get install util-linux")
def test_every_command_on_the_fleet_page_runs_as_written() -> None:
    ran = run_page("docs/fleet.md")
    assert list(ran.values()).count("once") == 2 and "screen" in ran.values(), ran


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="apt-get install prometheus")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="apt-get install util-linux")
def test_the_fleet_on_the_production_page_runs_as_written() -> None:
    # docs/production.md: three lab runs exporting, the fleet screen drawing all three
    ran = run_page("docs/production.md")
    assert list(ran.values()).count("started") == 3 and "screen" in ran.values(), ran
