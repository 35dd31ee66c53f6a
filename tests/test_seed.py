"""The seed's claims, checked on the originals themselves (issue 15), with figures from
ground truth: the X-Worker header counted by the client, CPU from /proc schedstat, and,
for starvation, the diagnosis the monitor gives from outside (attach sampler).

Balance under a burst is noisy: on 20 connections node:many_accepts gave top shares
0.40-0.70 and node:simple_cluster 0.30-0.45, so one burst can invert them. Over 10
bursts of 20 the means were 0.49-0.53 against 0.26-0.34 in every run seen, which is
what the test compares (`lab.seed.burst_skew`). proc_spawn's 200 sequential connections
(each 40-60) are tested in test_originals.py. Needs Debian's gcc, nodejs, golang-go and
apache2; each test skips naming the package when its toolchain is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import assert_all_gone
from lab import probes, seed
from lab.server import open_server
from lab.session import Session
from loadgen.levels import LoadLevel
from originals.registry import spec
from servers.config import ServerConfig

CLI = [sys.executable, "-m", "serverscope"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def needs(name: str) -> None:
    t = spec(name).toolchain
    if not t.present:
        pytest.skip(f"{name} needs {t.command}: install the Debian package {t.package}")


def _claim(key: str) -> seed.Claim:
    return next(c for c in seed.CLAIMS if c.key == key)


def test_many_accepts_takes_a_bigger_top_share_of_a_burst_than_simple_cluster() -> None:
    needs("node:many_accepts")
    many = seed.measure_one("node:many_accepts", _claim("many_accepts-skew"))
    rr = seed.measure_one("node:simple_cluster", _claim("cluster-balances"))
    assert many.value is not None and rr.value is not None, (many, rr)
    assert many.source.startswith("X-Worker")
    assert many.value > rr.value, (many.text, rr.text)


@pytest.mark.slow
def test_the_node_docs_anchor_is_measured_as_the_docs_state_it_with_8_workers() -> None:
    """The README held the docs' "over 70% of all connections ended up in just two
    processes, out of a total of eight" against a 4-worker figure. Measured as stated
    (8 workers, bursts of 100, on this machine's cores), it reads ~50% on 2 cores."""
    needs("node:many_accepts")
    claim = _claim("many_accepts-docs")
    assert claim.knobs == {"workers": 8} and claim.original == "node:many_accepts"
    fig = seed.measure_one("node:many_accepts", claim)
    assert fig.value is not None and 2 / 8 <= fig.value <= 1.0, fig
    assert fig.source.startswith("X-Worker")
    assert fig.text.startswith("top 2 of 8 took ") and "10 bursts of 100" in fig.text, fig
    assert fig.text.endswith(f"on {os.cpu_count()} cores"), fig


@pytest.mark.solo
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to use more than one")
def test_go_server_uses_more_than_one_and_a_half_cores_where_goroutines_stays_near_one() -> None:
    # Shared with other test runs, the host had ~1 core left (load 4-5: the rest of the
    # host used 1.0-1.1 cores) and Go got 0.88-1.25 cores: no bar on cores can hold then,
    # so the test skips, saying so, when the rest of the host took more than half a core.
    needs("go:server")
    figures = {}
    for name in ("go:server", "goroutines"):
        srv = open_server(ServerConfig(model=name))
        srv.start()
        try:
            figures[name] = probes.cores_used(srv.port, srv.pids, 8, seed.CPU_SECONDS)
        finally:
            srv.stop()
    (go, go_others), (py, _) = figures["go:server"], figures["goroutines"]
    assert py < 1.15, figures  # the GIL: one core at most (plus a little I/O)
    if go_others > 0.5:
        pytest.skip(f"the host was busy: others used {go_others:.2f} cores beside Go's {go:.2f}")
    assert go > 1.5, figures


def _diagnosed_starved(name: str, knobs: dict[str, object]) -> bool:
    """12 keep-alive clients idling 2 s between requests on a pool of 8: does the monitor,
    watching the original from outside, say starvation within 10 s?"""
    level = LoadLevel(clients=12, think_ms=2000, duration=12, read_timeout=30)
    cfg = ServerConfig(model=name, keepalive_timeout=15.0, **knobs)  # type: ignore[arg-type]
    session = Session(cfg, level)
    pids: list[int] = []
    seen = False
    tick = threading.Event()  # never set: its wait is the sampling period
    try:
        session.start()
        assert session.server is not None
        pids = session.server.pids()
        deadline = time.monotonic() + 10.0
        while not seen and time.monotonic() < deadline:
            snap = session.sample()
            seen = snap is not None and any(d.rule == "starvation" for d in snap.diagnoses)
            tick.wait(0.25)
    finally:
        session.close()
    assert_all_gone(pids, timeout=10)
    return seen


def test_apache_prefork_with_8_workers_under_idle_keepalive_is_diagnosed_starved() -> None:
    needs("apache:prefork")
    assert _diagnosed_starved("apache:prefork", dict(seed._POOL8))


def test_apache_event_under_the_same_idle_keepalive_is_not_diagnosed_starved() -> None:
    needs("apache:event")
    assert not _diagnosed_starved("apache:event", dict(seed._ONE_BY_8))


def test_prefork_and_worker_starve_a_new_client_where_event_answers_it() -> None:
    needs("apache:prefork")
    starved = {k: seed.measure_one(c, _claim(k)) for k, c in (
        ("prefork-starves", "apache:prefork"),
        ("worker-starves", "apache:worker"),
        ("event-keepalive", "apache:event"),
    )}  # fmt: skip
    assert [f.value for f in starved.values()] == [1.0, 1.0, 0.0], starved


def test_a_server_measured_for_a_claim_is_stopped_by_pid() -> None:
    needs("c:proc_spawn")
    srv = open_server(ServerConfig(model="c:proc_spawn", workers=4))
    srv.start()
    pids = [*srv.pids(), getattr(srv, "watchdog_pid", 0)]
    try:
        fig = seed.sequential_even(srv)
    finally:
        srv.stop()
    assert fig.text.endswith("of 200") and fig.value is not None and fig.value <= 0.3
    assert_all_gone(pids, timeout=10)


def test_seed_only_runs_one_claim_and_writes_its_svg(tmp_path: Path) -> None:
    needs("c:proc_spawn")
    out = tmp_path / "seed.svg"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run(
        [*CLI, "seed", "--only", "proc_spawn-even", "--svg", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert p.returncode == 0, p.stderr + p.stdout
    assert "proc_spawn-even: confirmed" in p.stdout
    assert "c:proc_spawn" in p.stdout and "X-Worker" in p.stdout, p.stdout
    assert "the whole run took" in p.stdout
    ET.fromstring(out.read_text())


def test_seed_refuses_an_unknown_claim_in_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run(
        [*CLI, "seed", "--only", "bogus"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and "proc_spawn-even" in p.stderr, p.stderr
