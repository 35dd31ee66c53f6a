"""How long a `serverscope fleet` refresh takes against a Prometheus holding N servers.

    .venv/bin/python bench/bench_fleet.py [--servers 10,100,400] [--workers 8] [--reads 10]

A real Prometheus (Debian's `prometheus`, on a free loopback port, a temp dir of its own)
scrapes one exporter that serves N copies of a synthetic agent's exposition (the collector
of export.prometheus on a skewed 8-worker snapshot), each copy under its own `instance`
label (`honor_labels: true`), as N agents would look once scraped. Figures, per N:
- series: what one fleet read's answers held;
- read: wall time of `FleetReader.read()` (its instant queries, parsing, ranking), median
  of --reads;
- reference, same Prometheus and moment: one instant query fetching every serverscope
  series at once (`{__name__=~"serverscope_.*"}`) through the same client, median; the
  ratio says what the fleet's several queries and its parsing cost over a bare fetch;
- history: `FleetReader.history()` of one server (4 range queries), median.

Figures (notes, not asserted): see docs/fleet.md, "Cost".
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

import synthetic
from export.prometheus import SnapshotCollector
from lab.fleet_source import FleetReader
from readers.promapi import PromClient


class Copies(Collector):
    """N copies of one collector's families, each sample labelled instance="srv-I:9464"."""

    def __init__(self, inner: SnapshotCollector, n: int) -> None:
        self.families = list(inner.collect())
        self.n = n

    def collect(self) -> Iterator[Metric]:
        for fam in self.families:
            out = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for i in range(self.n):
                for s in fam.samples:
                    labels = {**s.labels, "instance": f"srv-{i}:9464"}
                    out.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
            yield out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median_s(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(n: int, workers: int, reads: int, prometheus: str) -> str:
    snap = synthetic.series(
        24, workers=workers, accepts=[30] + [1] * (workers - 1), connections=[3, 1], queue=5
    )[-1]
    inner = SnapshotCollector(host="bench")
    inner.update(snap)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Copies(inner, n))
    body = generate_latest(registry)  # rendered once: the bench measures the reader

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    target = server.server_address[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\n"
        "scrape_configs:\n  - job_name: serverscope\n    honor_labels: true\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        reader = FleetReader(PromClient(f"http://127.0.0.1:{port}"), minutes=5)
        deadline = time.monotonic() + 60
        while True:  # until the last scrape succeeded and held every copy
            try:
                up = reader.client.query("up", time.time())
                fresh = reader.read()
                whole = len(fresh.servers) == n and all(s.workers for s in fresh.servers)
                if up and up[0].value == 1 and whole:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"Prometheus did not scrape {n} servers in 60 s")
            time.sleep(0.5)
        fleet = reader.read()
        read = median_s(reader.read, reads)
        everything = '{__name__=~"serverscope_.*"}'
        fetched = len(reader.client.query(everything, time.time()))
        ref = median_s(lambda: reader.client.query(everything, time.time()), reads)
        sid = fleet.servers[0].id
        hist = median_s(lambda: reader.history(sid), reads)
        reader.close()
        return (
            f"{n:5d} servers, {fleet.series:6d} series ({fleet.queries} queries): "
            f"read {read * 1000:7.1f} ms; reference, all {fetched} series in one query "
            f"{ref * 1000:7.1f} ms (read / reference = {read / ref:.2f}x); "
            f"history of one server {hist * 1000:6.1f} ms"
        )
    finally:
        proc.terminate()
        proc.wait(15)
        server.shutdown()
        server.server_close()
        thread.join(5)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="10,100,400", help="comma-separated N")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--reads", type=int, default=10)
    a = ap.parse_args()
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("needs the Prometheus server: apt-get install prometheus", file=sys.stderr)
        return 2
    print(f"fleet refresh, {a.workers} workers per server; load {os.getloadavg()[0]:.1f}")
    for n in (int(x) for x in a.servers.split(",")):
        print(run(n, a.workers, a.reads, prometheus), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
