"""The fleet's CPU throttling against the cgroup's own cpu.stat: a real agent (`attach
--no-ui --export`) on a lab model whose workers live in a CPU-limited cgroup made for the
test (0.2 core; v2 where the unified tree holds cpu, else v1), scraped every second by a
real Prometheus. The fleet's figure is rate(throttled periods) / rate(periods) over its
window; the ground truth is the same ratio of what cpu.stat gained over that window.

How the two are lined up, since the agent samples cpu.stat and Prometheus scrapes the agent
at moments of their own: the window starts and ends while the server is idle (cpu.stat
then moves by a period or two a second and throttles nothing), and cpu.stat is read
before and after each end's scraped sample is known to exist, so the counters at each end
lie between two readings; the fleet's share must lie between the extreme ratios they
allow. Prometheus's rate() extrapolates both counters by the same factor (same scrapes),
unless a counter's first value is near 0: a first load before the window keeps both far
from it.
"""

from __future__ import annotations

import http.client
import math
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import assert_all_gone, terminate_all, wait_until
from lab.fleet_source import FleetReader
from plumbing.cgroupfs import CgroupError, LimitedCgroup
from promlaunch import needs_prometheus, prometheus  # noqa: F401 - the fixture
from readers.cgroupcpu import parse_cpu_stat
from readers.promapi import PromClient
from test_fleet_real import CLI, _scrape_config
from values import series as names

CORES = 0.2
LOAD_S = 3.0  # each load's length
# the exporter's counters (the wait reads them; the fleet reads its own names)
AGENT = ["--estimate-accepts", "--export", "127.0.0.1:0"]
COUNTERS = [names.series(names.PERIODS), names.series(names.THROTTLED_PERIODS)]


def _load(port: int, seconds: float) -> None:
    """One client asking for 30 ms of CPU, then waiting 0.1 s, for `seconds`: a request
    outlasts one period's 20 ms of quota, so about one period in two is throttled."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/work?cpu_ms=30", headers={"Connection": "close"})
        c.getresponse().read()
        c.close()
        time.sleep(0.1)  # the load's shape (idle between requests), not a wait for a state


@pytest.mark.slow
@pytest.mark.timeout(120)
@needs_prometheus
def test_the_fleets_throttled_share_is_what_cpu_stat_counted(
    start_server,
    prometheus,  # noqa: F811
) -> None:
    sup = start_server("many_accepts", workers=2)
    try:
        cg = LimitedCgroup(f"serverscope-fleet-test-{os.getpid()}", CORES)
    except CgroupError as e:
        pytest.skip(f"no cgroup of our own: {e}")
    agent = None
    try:
        for pid in sup.worker_pids():
            cg.add(pid)

        def stat() -> tuple[int, int]:
            periods, throttled, _ = parse_cpu_stat(Path(cg.dir, "cpu.stat").read_text())
            assert periods is not None and throttled is not None
            return periods, throttled

        agent = subprocess.Popen(
            [*CLI, "attach", "--pid", str(sup.root_pid), "--no-ui", *AGENT],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = agent.stderr.readline() if agent.stderr else ""
        assert "exporting on http://" in line, line
        target = line.split("exporting on http://")[1].split("/")[0]
        base = prometheus(_scrape_config([target]))
        client = PromClient(base)
        sel = f'{{cgroup="{cg.path}"}}'

        def scraped_after(wall: float) -> bool:
            """Prometheus holds a sample of the agent's sampled after `wall`, with the
            cgroup's counters in it."""
            now = time.time()
            ts = client.query("serverscope_snapshot_timestamp_seconds", now)
            have = all(client.query(name + sel, now) for name in COUNTERS)
            return have and bool(ts) and (ts[0].value or 0) > wall

        _load(sup.port, LOAD_S)  # the counters far from 0 before the window (see above)
        first_lo, w = stat(), time.time()
        wait_until(lambda: scraped_after(w), 30, "a scrape of the idle cgroup")
        start = time.time()  # the window's first sample: a scrape after this
        wait_until(lambda: scraped_after(start), 30, "the window's first scrape")
        first_hi = stat()
        _load(sup.port, LOAD_S)
        last_lo, w = stat(), time.time()
        wait_until(lambda: scraped_after(w), 30, "a scrape after the load")
        # whole seconds (the reader asks for [Ns]): the window is exactly start..end
        end = start + math.ceil(time.time() - start)
        wait_until(lambda: time.time() >= end, 5, "the window's end")
        reader = FleetReader(PromClient(base), rate_window_s=end - start)
        [s] = reader.read(at=end).servers
        last_hi = stat()
        reader.close()
        client.close()

        assert first_lo[0] > 0 and first_lo[1] > 0, first_lo  # no counter near 0
        low = (last_lo[1] - first_hi[1]) / (last_hi[0] - first_lo[0])
        high = (last_hi[1] - first_lo[1]) / (last_lo[0] - first_hi[0])
        assert s.throttled is not None, "the fleet read no throttling"
        assert s.cpu_limit == pytest.approx(CORES), s.cpu_limit  # the cgroup's own quota
        assert low - 1e-9 <= s.throttled <= high + 1e-9, (low, s.throttled, high)
        assert low > 0.0 and high - low < 0.2, (first_lo, first_hi, last_lo, last_hi)
        print(
            f"\nthrottled: fleet {s.throttled:.3f}, cpu.stat between {low:.3f} and "
            f"{high:.3f} (periods {first_lo[0]}..{last_hi[0]}, throttled "
            f"{first_lo[1]}..{last_hi[1]}; window {end - start:.1f} s)"
        )
    finally:
        if agent is not None:
            terminate_all([agent])
        cg.remove()
    assert_all_gone([agent.pid])
    assert not os.path.exists(cg.dir)
