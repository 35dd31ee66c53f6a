"""Cost of one Prometheus scrape of the exporter at 250 workers.

    .venv/bin/python bench/bench_export.py [--workers 250] [--scrapes 200]

The snapshot is synthetic (250 process workers, a skewed accept series with imbalance and
diagnoses filled in), so only the exporter is measured, never a sampler. Figures:
- render: CPU time (time.thread_time) of `generate_latest` on the exporter's registry,
  i.e. what the scrape thread spends building /metrics;
- scrape: wall time of a whole HTTP GET /metrics over loopback (client included), and the
  process CPU time it took (server thread + client);
- reference, same run: `json.dumps(snapshot.to_dict())`, which `--record` pays per sample;
- size: bytes and samples in one exposition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from prometheus_client import generate_latest

import synthetic
from export.prometheus import ExportAddress, SnapshotExporter


def _mean_ms(fn, n: int, clock=time.thread_time) -> float:  # type: ignore[no-untyped-def]
    for _ in range(5):
        fn()
    t0 = clock()
    for _ in range(n):
        fn()
    return (clock() - t0) / n * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=250)
    ap.add_argument("--scrapes", type=int, default=200)
    a = ap.parse_args()
    accepts = [30] + [1] * (a.workers - 1)
    snap = synthetic.series(
        24, workers=a.workers, accepts=accepts, connections=[3, 1], requests=[40, 2], queue=50
    )[-1]
    with SnapshotExporter(ExportAddress("127.0.0.1", 0)) as exporter:
        exporter.update(snap)
        body = generate_latest(exporter.registry)
        samples = sum(1 for ln in body.decode().splitlines() if ln and not ln.startswith("#"))
        render = _mean_ms(lambda: generate_latest(exporter.registry), a.scrapes)
        ref = _mean_ms(lambda: json.dumps(snap.to_dict()), a.scrapes)

        def get() -> None:
            with urllib.request.urlopen(exporter.url, timeout=10) as r:
                r.read()

        scrape_cpu = _mean_ms(get, a.scrapes, clock=time.process_time)
        wall = []
        for _ in range(a.scrapes):
            t0 = time.perf_counter()
            get()
            wall.append((time.perf_counter() - t0) * 1000)
    print(f"exporter at {a.workers} workers, {len(snap.diagnoses)} diagnoses active")
    print(f"  exposition: {len(body) / 1024:.0f} KiB, {samples} samples")
    print(f"  render (generate_latest), CPU:   {render:6.2f} ms per scrape")
    print(f"  HTTP scrape, process CPU:        {scrape_cpu:6.2f} ms per scrape")
    print(
        f"  HTTP scrape, wall: median {statistics.median(wall):.2f} ms, "
        f"p90 {statistics.quantiles(wall, n=10)[-1]:.2f} ms"
    )
    print(
        f"  reference, json.dumps(snapshot): {ref:6.2f} ms  (render / json = {render / ref:.1f}x)"
    )
    for interval in (15, 1):
        print(f"  scraped every {interval:>2} s: {scrape_cpu / interval / 10:.3f} % of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
