"""The alert rules of docs/production.md, as printed, pass `promtool test rules` (Debian's
`prometheus` package ships promtool): the skew alert fires for a host where one worker of
four takes 91 % of the accepts and not for an even host; the queue alert fires near the
limit only."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROMTOOL = shutil.which("promtool")
PAGE = Path(__file__).resolve().parent.parent / "docs" / "production.md"

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool: apt-get install prometheus"
)

TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # host a: worker 0 takes 90 of every 99 accepts; host b: even
      - series: 'serverscope_worker_accepts_total{instance="a",worker="0"}'
        values: '0+90x30'
      - series: 'serverscope_worker_accepts_total{instance="a",worker="1"}'
        values: '0+3x30'
      - series: 'serverscope_worker_accepts_total{instance="a",worker="2"}'
        values: '0+3x30'
      - series: 'serverscope_worker_accepts_total{instance="a",worker="3"}'
        values: '0+3x30'
      - series: 'serverscope_worker_accepts_total{instance="b",worker="0"}'
        values: '0+30x30'
      - series: 'serverscope_worker_accepts_total{instance="b",worker="1"}'
        values: '0+30x30'
      - series: 'serverscope_worker_accepts_total{instance="b",worker="2"}'
        values: '0+30x30'
      - series: 'serverscope_worker_accepts_total{instance="b",worker="3"}'
        values: '0+30x30'
      - series: 'serverscope_listener_queue_length{instance="a",port="8080"}'
        values: '500x30'
      - series: 'serverscope_listener_queue_limit{instance="a",port="8080"}'
        values: '511x30'
      - series: 'serverscope_listener_queue_length{instance="b",port="8080"}'
        values: '10x30'
      - series: 'serverscope_listener_queue_limit{instance="b",port="8080"}'
        values: '511x30'
    alert_rule_test:
      - eval_time: 5m
        alertname: AcceptSkew
        exp_alerts: []
      - eval_time: 20m
        alertname: AcceptSkew
        exp_alerts:
          - exp_labels: {severity: warning, instance: a}
            exp_annotations:
              summary: "a: one worker takes 90.91% of the accepts"
      - eval_time: 20m
        alertname: AcceptQueueNearFull
        exp_alerts:
          - exp_labels: {severity: critical, instance: a, port: "8080"}
            exp_annotations:
              summary: "a port 8080: accept queue 97.85% full"
"""


def _page_rules() -> str:
    text = PAGE.read_text()
    m = re.search(r"<!-- alert-rules -->\n```yaml\n(.*?)```\n<!-- /alert-rules -->", text, re.S)
    assert m, "docs/production.md: the alert rules block between <!-- alert-rules --> markers"
    return m.group(1)


def test_the_documented_alert_rules_fire_on_skew_and_a_full_queue_only(tmp_path):
    (tmp_path / "rules.yml").write_text(_page_rules())
    (tmp_path / "tests.yml").write_text(TESTS)
    check = subprocess.run(
        [PROMTOOL, "check", "rules", "rules.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    out = subprocess.run(
        [PROMTOOL, "test", "rules", "tests.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
