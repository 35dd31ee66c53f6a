"""A real Prometheus (Debian's `prometheus` package) scrapes the exporter every second while
a skewed many_accepts burst runs; its HTTP API must then give the run's own figures: each
worker's accepts and the accept Jain index of the summary `serverscope run` prints.

Bounded: the burst runs 3 s, inside the 5 s imbalance window, so the exported (windowed)
Jain index covers the whole run and must equal the summary's whole-run index.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from conftest import wait_until
from export.prometheus import ExportAddress, SnapshotExporter
from lab.headless import run_headless
from loadgen.levels import preset
from promlaunch import needs_prometheus, prometheus  # noqa: F401 - the fixture
from servers.config import ServerConfig
from values.snapshot import Snapshot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90), needs_prometheus]


def _scrape(target_port: int) -> str:
    """A Prometheus config scraping the exporter on `target_port` every second."""
    return (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: serverscope\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_per_worker_accepts_and_jain_of_a_skewed_burst(
    prometheus,  # noqa: F811 - the fixture
):
    t0 = time.monotonic()
    with SnapshotExporter(ExportAddress("127.0.0.1", 0)) as exporter:
        base = prometheus(_scrape(exporter.port))
        seen: list[Snapshot] = []
        level = preset("burst").with_(duration=3)
        summary = run_headless(
            ServerConfig(model="many_accepts", workers=4),
            level,
            observers=[exporter.update, seen.append],
        )
        assert summary.ok, summary
        final = seen[-1]

        def scraped_final() -> bool:
            r = _query(base, "serverscope_snapshot_timestamp_seconds")
            return bool(r) and float(r[0]["value"][1]) == pytest.approx(final.wall_time)

        wait_until(scraped_final, 10, "Prometheus to scrape the run's final snapshot")
        t_scraped = time.monotonic()

        # per-worker accepts: Prometheus's series against the summary's rows
        rows = _query(base, 'serverscope_worker_accepts_total{job="serverscope"}')
        prom = {int(r["metric"]["pid"]): float(r["value"][1]) for r in rows}
        first = {w.pid: w.accepts_total or 0 for w in seen[0].workers}
        ours = {w.pid: w.accepts for w in summary.workers}
        assert set(prom) == set(ours)
        assert {pid: prom[pid] - first.get(pid, 0) for pid in prom} == ours
        assert sum(ours.values()) >= level.clients  # every client's connection was accepted
        assert all(r["metric"]["role"] == "worker" for r in rows)

        # the accept imbalance over the window (which holds the whole run): the exported gauges
        (jain,) = _query(base, 'serverscope_imbalance_jain{metric="accepts"}')
        assert float(jain["value"][1]) == pytest.approx(summary.accept_jain, abs=1e-6)
        (top,) = _query(base, 'serverscope_imbalance_top_share{metric="accepts"}')
        assert float(top["value"][1]) == pytest.approx(summary.accept_top_share, abs=1e-6)
        up = _query(base, 'up{job="serverscope"}')
        assert [float(u["value"][1]) for u in up] == [1.0]
    print(
        f"\nPrometheus test: {len(prom)} workers, accepts {sorted(ours.values())}, "
        f"Jain {summary.accept_jain:.3f}, top share {summary.accept_top_share:.2f}; "
        f"final scrape seen {t_scraped - t0:.1f} s after the start, "
        f"whole test body {time.monotonic() - t0:.1f} s"
    )
