"""The Prometheus exporter: /metrics, parsed with prometheus_client's own text parser, says
what the snapshot it was handed says (and leaves out what the snapshot does not know)."""

from __future__ import annotations

import argparse
import dataclasses
import threading
import urllib.request

import pytest

import synthetic
from commands import export as export_option
from export import prometheus as prom
from values.server_info import KernelCounters
from values.snapshot import Role, WorkerSample

parser = pytest.importorskip("prometheus_client.parser")


def _scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {f.name: f.samples for f in parser.text_string_to_metric_families(text)}


def _skewed_snapshot():
    snaps = synthetic.series(
        24,
        workers=8,
        accepts=[71, 5, 5, 5, 4, 4, 3, 3],
        connections=[9, 1, 1, 1, 0, 0, 0, 0],
        requests=[140, 10, 10, 10, 8, 8, 6, 6],
        queue=40,
        limit=64,
    )
    snap = snaps[-1]
    kernel = KernelCounters(listen_overflows=1234, listen_drops=1300, overflows_delta=3)
    return dataclasses.replace(snap, kernel=kernel)


@pytest.fixture
def exporter():
    e = prom.SnapshotExporter(prom.ExportAddress("127.0.0.1", 0)).start()
    try:
        yield e
    finally:
        e.close()


def test_metrics_say_what_the_snapshot_says(exporter):
    snap = _skewed_snapshot()
    assert snap.diagnoses, "the skewed series should fire a diagnosis"
    exporter.update(snap)
    fams = _scrape(exporter.url)

    by_worker = {w.slot: w for w in snap.workers}
    accepts = fams["serverscope_worker_accepts"]
    assert len(accepts) == len(snap.workers)
    for s in accepts:
        w = by_worker[int(s.labels["worker"])]
        assert s.name == "serverscope_worker_accepts_total"
        assert s.value == w.accepts_total
        assert s.labels["pid"] == str(w.pid) and s.labels["tid"] == str(w.tid)
        assert s.labels["model"] == "many_accepts" and s.labels["role"] == "worker"
    for s in fams["serverscope_worker_requests"]:
        assert s.value == by_worker[int(s.labels["worker"])].requests_total
    for s in fams["serverscope_worker_cpu_seconds"]:
        assert s.value == pytest.approx(by_worker[int(s.labels["worker"])].cpu_seconds)
    for s in fams["serverscope_worker_open_connections"]:
        assert s.value == by_worker[int(s.labels["worker"])].connections
    states = fams["serverscope_worker_state"]
    assert {(s.labels["worker"], s.labels["state"]) for s in states} == {
        (str(w.slot), w.state) for w in snap.workers
    }
    assert {s.value for s in states} == {1.0}

    (queue,) = fams["serverscope_listener_queue_length"]
    (limit,) = fams["serverscope_listener_queue_limit"]
    assert (queue.value, limit.value) == (40, 64)

    (overflows,) = fams["serverscope_kernel_listen_overflows"]
    assert overflows.name.endswith("_total") and overflows.value == 1234
    (drops,) = fams["serverscope_kernel_listen_drops"]
    assert drops.value == 1300

    jain = {s.labels["metric"]: s.value for s in fams["serverscope_imbalance_jain"]}
    assert jain["accepts"] == pytest.approx(snap.imbalance.accepts.jain)
    top = {s.labels["metric"]: s.value for s in fams["serverscope_imbalance_top_share"]}
    assert top["accepts"] == pytest.approx(snap.imbalance.accepts.top_share)
    assert top["accepts"] == pytest.approx(71 / 100)

    active = {s.labels["rule"]: s.value for s in fams["serverscope_diagnosis_active"]}
    assert active == {d.rule: 1.0 for d in snap.diagnoses}


def test_help_marks_the_kernel_counters_namespace_wide(exporter):
    exporter.update(_skewed_snapshot())
    with urllib.request.urlopen(exporter.url, timeout=10) as r:
        text = r.read().decode()
    helps = [ln for ln in text.splitlines() if ln.startswith("# HELP serverscope_kernel_")]
    assert len(helps) == 2
    assert all("NAMESPACE-WIDE" in ln for ln in helps)


def test_unknown_figures_are_left_out_not_sent_as_zero(exporter):
    snap = synthetic.snapshot(workers=3)
    unknown = tuple(
        dataclasses.replace(
            w,
            accepts=None,
            accepts_total=None,
            requests_total=None,
            cpu_seconds=None,
            connections=None,
            state="unknown",
            slot=None,
            name="nginx",
        )
        for w in snap.workers
    )
    ln = dataclasses.replace(snap.listeners[0], limit=None)
    model = dataclasses.replace(snap.model, name="attached")
    attached = dataclasses.replace(snap, model=model, workers=unknown, listeners=(ln,), kernel=None)
    exporter.update(attached)
    fams = _scrape(exporter.url)
    for name in (
        "serverscope_worker_accepts",
        "serverscope_worker_requests",
        "serverscope_worker_cpu_seconds",
        "serverscope_worker_open_connections",
        "serverscope_listener_queue_limit",
        "serverscope_imbalance_jain",
    ):
        assert fams.get(name, []) == [], name
    assert "serverscope_kernel_listen_overflows" not in fams
    states = [s for s in fams["serverscope_worker_state"] if s.value == 1]
    assert {s.labels["state"] for s in states} == {"unknown"}
    # attached: no slot, so the worker index is the position; the model label is the server
    assert sorted(s.labels["worker"] for s in states) == ["0", "1", "2"]
    assert {s.labels["model"] for s in states} == {"nginx"}


def test_a_diagnosis_that_ended_reads_zero(exporter):
    snap = _skewed_snapshot()
    exporter.update(snap)
    _scrape(exporter.url)
    exporter.update(dataclasses.replace(snap, diagnoses=()))
    active = {
        s.labels["rule"]: s.value for s in _scrape(exporter.url)["serverscope_diagnosis_active"]
    }
    assert active and set(active.values()) == {0.0}


def test_the_role_label_is_the_samples_role():
    plain = synthetic.snapshot(workers=1).workers[0]
    assert isinstance(plain, WorkerSample) and prom.role_of(plain) == "worker"
    listener = dataclasses.replace(plain, role=Role.LISTENER)
    assert prom.role_of(listener) == "listener"


def test_nothing_is_served_before_the_first_snapshot(exporter):
    assert _scrape(exporter.url) == {}


def test_scrapes_never_see_a_half_updated_snapshot(exporter):
    a, b = (
        synthetic.snapshot(workers=50, accepts_total=[1]),
        synthetic.snapshot(workers=50, accepts_total=[2]),
    )
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            exporter.update(a)
            exporter.update(b)

    t = threading.Thread(target=flip)
    t.start()
    try:
        for _ in range(20):
            values = {s.value for s in _scrape(exporter.url)["serverscope_worker_accepts"]}
            assert len(values) == 1
    finally:
        stop.set()
        t.join()


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9464", "127.0.0.1", 9464),
        ("[::1]:9000", "::1", 9000),
        (":9464", "127.0.0.1", 9464),
        ("9464", "127.0.0.1", 9464),
    ],
)
def test_export_addresses_parse(text, host, port):
    assert prom.parse_address(text) == prom.ExportAddress(host, port)


@pytest.mark.parametrize("text", ["127.0.0.1:http", "[::1]9000", "127.0.0.1:70000"])
def test_a_bad_export_address_is_one_clear_line(text):
    with pytest.raises(prom.ExportError, match="--export") as e:
        prom.parse_address(text)
    assert "\n" not in str(e.value)


def test_a_non_loopback_export_needs_the_explicit_flag(capsys):
    a = argparse.Namespace(export="0.0.0.0:0", export_any_host=False)
    with pytest.raises(prom.ExportError, match="--export-any-host"):
        export_option.from_args(a)
    a.export_any_host = True
    e = export_option.from_args(a)
    assert e is not None
    try:
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "warning" in err and "0.0.0.0" in err
    finally:
        e.close()


def test_a_busy_export_port_is_named(exporter):
    a = argparse.Namespace(export=f"127.0.0.1:{exporter.port}", export_any_host=False)
    with pytest.raises(prom.ExportError, match=f"cannot export on 127.0.0.1:{exporter.port}"):
        export_option.from_args(a)


def test_phases_are_one_histogram_per_measured_phase(exporter):
    from plumbing.loghist import LogHist

    snap = synthetic.series(25, queue_ms=[4200.0, 0.2], server_ms=12.0, service_ms=0.03)[-1]
    assert snap.phases is not None and snap.phases.queue is not None
    exporter.update(snap)
    fams = _scrape(exporter.url)
    samples = fams["serverscope_phase_seconds"]
    count = {s.labels["phase"]: s.value for s in samples if s.name.endswith("_count")}
    assert count == {p: float(h.count) for p, h in snap.phases.items() if h is not None}
    queue = {
        s.labels["le"]: s.value
        for s in samples
        if s.name.endswith("_bucket") and s.labels["phase"] == "queue"
    }
    half = snap.phases.queue.count / 2  # half waited 4.2 s, half 200 us
    assert queue["0.0001"] == 0 and queue["0.00025"] == half  # 200 us: under 250 us
    assert queue["2.5"] == half and queue["5.0"] == 2 * half and queue["+Inf"] == 2 * half
    sums = {s.labels["phase"]: s.value for s in samples if s.name.endswith("_sum")}
    assert sums["server"] == pytest.approx(snap.phases.server.sum_us / 1e6)
    # a phase not measured is absent, not an empty histogram
    only_queue = dataclasses.replace(
        snap, phases=dataclasses.replace(snap.phases, server=None, service=LogHist())
    )
    exporter.update(only_queue)
    phases = {s.labels["phase"] for s in _scrape(exporter.url)["serverscope_phase_seconds"]}
    assert phases == {"queue", "service"}
    exporter.update(synthetic.series(3)[-1])  # nothing measured: no family at all
    assert "serverscope_phase_seconds" not in _scrape(exporter.url)
