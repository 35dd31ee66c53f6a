"""The cgroup CPU series are one contract between the exporter that writes them and
everything that reads them back: the fleet, the alert rules, the Grafana dashboard, the
docs. The fleet once asked for `serverscope_cgroup_cpu_cfs_*` while the exporter wrote
`serverscope_cgroup_cpu_*`, and showed every server's throttling as unknown."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, parser

from export.prometheus import SnapshotCollector
from fleetfake import FakeProm, server
from lab import fleet_source
from lab.fleet_source import THROTTLE_SERIES
from test_cpulimit import _limited_series
from values.findings import Diagnosis, Severity
from values.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[1]
READERS = [
    ROOT / "docs" / "prometheus" / "fleet-rules.yml",
    ROOT / "docs" / "prometheus" / "fleet-rules.test.yml",
    ROOT / "docs" / "grafana" / "serverscope.json",
    *sorted((ROOT / "docs").glob("*.md")),
]


def _scrape(snap: Snapshot) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The exporter's series for `snap`, by series name (counters with their _total)."""
    collector = SnapshotCollector()
    collector.update(snap)
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in parser.text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_every_cgroup_series_read_back_is_one_the_exporter_writes() -> None:
    written = set(_scrape(_limited_series(3)[-1]))
    assert set(THROTTLE_SERIES) <= written, (THROTTLE_SERIES, sorted(written))
    for path in READERS:
        named = set(re.findall(r"serverscope_cgroup_\w+", path.read_text(encoding="utf-8")))
        assert named <= written, (path.name, sorted(named - written))


def test_the_fleet_reads_the_throttled_share_the_exporters_counters_give() -> None:
    """Two scrapes of a real exporter, 2 s apart, as Prometheus's rate() would take them:
    the fleet's share is the cgroup's throttled periods over its periods between them."""
    snaps = _limited_series(12, throttled=[1, 3], periods=4)
    first, last = _scrape(snaps[3]), _scrape(snaps[11])
    cg0, cg1 = snaps[3].cpu_cgroups[0], snaps[11].cpu_cgroups[0]
    truth = (cg1.nr_throttled - cg0.nr_throttled) / (cg1.nr_periods - cg0.nr_periods)  # type: ignore[operator]
    assert 0 < truth < 1
    fake = FakeProm()
    server(fake, "a:9464", server="many_accepts", root_pid=1000, port=8080, connections=[1, 1])
    for name in THROTTLE_SERIES:
        [(labels, v0)], [(_, v1)] = first[name], last[name]
        fake.add(f"rate:{name}", (v1 - v0) / 2.0, instance="a:9464", **labels)
    [s] = fake.reader().read().servers
    assert s.throttled == pytest.approx(truth)


def test_no_limit_reads_as_never_throttled_and_no_counters_as_unknown() -> None:
    """Without a quota cpu.stat still counts, and counts nothing: nothing can be throttled,
    so the fleet says 0; a cpu.stat without the counters (v2 without the cpu controller)
    exports none, and the fleet says unknown, not 0."""
    free = _limited_series(3, cores=None, throttled=0, periods=0)[-1]
    bare = dataclasses.replace(
        free,
        cpu_cgroups=tuple(
            dataclasses.replace(c, nr_periods=None, nr_throttled=None, throttled_s=None)
            for c in free.cpu_cgroups
        ),
    )
    got = []
    for snap in (free, bare):
        series = _scrape(snap)
        fake = FakeProm()
        server(fake, "a:9464", server="nginx", root_pid=1000, port=8080, connections=[0, 0])
        for name in THROTTLE_SERIES:
            for labels, _ in series.get(name, []):
                fake.add(f"rate:{name}", 0.0, instance="a:9464", **labels)  # constant: rate 0
        [s] = fake.reader().read().servers
        got.append(s.throttled)
    assert got == [0.0, None]


def test_every_series_the_fleet_asks_for_is_one_the_exporter_writes() -> None:
    """Not only the cgroup's: the names the fleet's queries match (values.series, declared
    once for both sides) against a scrape of a snapshot with every kind of series."""
    snap = _limited_series(3)[-1]
    snap = dataclasses.replace(
        snap, diagnoses=(Diagnosis("accept_skew", Severity.WARNING, "accept skew: ..."),)
    )
    written = set(_scrape(snap))
    asked = [fleet_source.SNAPSHOT_TS, fleet_source.SERVER_INFO, fleet_source.DIAGNOSIS]
    for pattern in (fleet_source.IMBALANCE, fleet_source.QUEUES, fleet_source.WORKERS):
        asked += pattern.split("|")
    assert len(asked) == 15 and set(asked) <= written, sorted(set(asked) - written)
