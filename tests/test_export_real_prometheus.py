"""A real Prometheus (Debian's `prometheus` package) scrapes the exporter every second while
a skewed many_accepts burst runs; its HTTP API must then give the run's own figures: each
worker's accepts and the accept Jain index of the summary `serverscope run` prints.

Bounded: the burst runs 3 s, inside the 5 s imbalance window, so the exported (windowed)
Jain index covers the whole run and must equal the summary's whole-run index.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import assert_all_gone, wait_until
from export.prometheus import ExportAddress, SnapshotExporter
from lab.headless import run_headless
from loadgen.levels import preset
from servers.config import ServerConfig
from values.snapshot import Snapshot

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        PROMETHEUS is None, reason="needs the Prometheus server: apt-get install prometheus"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def prometheus(tmp_path: Path):
    """Start Prometheus on its own free loopback port and storage dir; yields a function that
    points it at an exporter's port (the config is written before the start)."""
    procs: list[subprocess.Popen] = []

    def start(target_port: int) -> str:
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: serverscope\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 (closed with the fixture)
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(base) or proc.poll() is not None, 30, "Prometheus ready")
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
        return base

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert_all_gone([p.pid for p in procs])


def test_prometheus_scrapes_the_per_worker_accepts_and_jain_of_a_skewed_burst(prometheus):
    t0 = time.monotonic()
    with SnapshotExporter(ExportAddress("127.0.0.1", 0)) as exporter:
        base = prometheus(exporter.port)
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
