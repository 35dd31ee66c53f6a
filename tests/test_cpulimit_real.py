"""A real CPU limit on a lab model's workers: a cgroup made for the test (the hierarchy that
holds `cpu`, v1 or v2), 0.2 core, CPU-heavy requests. The limit and the throttling both
samplers show (the lab's, and attach's by pid) are what the cgroup's own files say, read
around each sample; the diagnosis fires. Moved out of it, the same load fires nothing.
The cgroup is removed in every case (LimitedCgroup.remove moves what is left out)."""

from __future__ import annotations

import http.client
import os
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from judging import analysis, cpulimit
from judging.analyser import Analyser
from plumbing.cgroupfs import CgroupError, LimitedCgroup
from readers.cgroupcpu import parse_cpu_stat
from sources.sampler import Sampler
from text.attach import render
from values.snapshot import Snapshot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

CORES = 0.2
WORKERS = 4
RULES = {"cpu_throttled", "cpu_oversubscribed"}


def _load(port: int, stop: threading.Event) -> None:
    """Requests burning 20 ms of CPU each, one after another, until stopped."""
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/work?cpu_ms=20", headers={"Connection": "close"})
            c.getresponse().read()
            c.close()
        except OSError:
            stop.wait(0.05)


def _stat(cg: LimitedCgroup) -> tuple[int | None, int | None, float | None]:
    return parse_cpu_stat(Path(cg.dir, "cpu.stat").read_text())


def _limit_files(cg: LimitedCgroup) -> tuple[int, int]:
    if cg.hierarchy.version == 2:
        quota, period = Path(cg.dir, "cpu.max").read_text().split()
        return int(quota), int(period)
    d = Path(cg.dir)
    return int((d / "cpu.cfs_quota_us").read_text()), int((d / "cpu.cfs_period_us").read_text())


def _sampled(
    samplers: list[Sampler], seconds: float, port: int, check=None, until=None
) -> list[list[Snapshot]]:
    """Each sampler's analysed snapshots at 4 Hz under load, for up to `seconds` (or until
    `until(lab snapshots)`); `check(sampler index, snapshot, before, after)` each sample."""
    analysers = [Analyser() for _ in samplers]
    out: list[list[Snapshot]] = [[] for _ in samplers]
    stop = threading.Event()
    load = [threading.Thread(target=_load, args=(port, stop)) for _ in range(6)]
    for t in load:
        t.start()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for i, (sampler, analyser) in enumerate(zip(samplers, analysers, strict=True)):
                before = time.monotonic()
                snap = analyser.annotate(sampler.sample())
                out[i].append(snap)
                if check is not None:
                    check(i, snap, before)
            if until is not None and until(out[0]):
                break
            time.sleep(0.25)
    finally:
        stop.set()
        for t in load:
            t.join(10)
    return out


def test_a_cpu_limited_models_throttling_is_shown_as_cpu_stat_says_and_diagnosed(
    start_server,
) -> None:
    sup = start_server("many_accepts", workers=WORKERS)
    try:
        cg = LimitedCgroup(f"serverscope-test-{os.getpid()}", CORES)
    except CgroupError as e:
        pytest.skip(f"no cgroup of our own: {e}")
    samplers = [Sampler.for_supervisor(sup), Sampler.attach(pid=sup.root_pid)]
    checked = []
    try:
        for pid in sup.pids():
            cg.add(pid)
        quota, period = _limit_files(cg)

        def check(i: int, snap: Snapshot, _t: float) -> None:
            after = _stat(cg)
            mine = [c for c in snap.cpu_cgroups if c.path == cg.path]
            assert len(mine) == 1, snap.cpu_cgroups
            c = mine[0]
            assert (c.limited, c.limit_path, c.quota_us, c.period_us) == (
                True,
                cg.path,
                quota,
                period,
            )
            assert c.cores == pytest.approx(CORES)
            assert set(c.pids) >= {w.pid for w in snap.live_workers}
            # cumulative counters: what the sample read lies between the file read just
            # before this sampler's read (the previous check's "after") and just after
            before = checked[-1][1] if checked else (0, 0, 0.0)
            figures = (c.nr_periods, c.nr_throttled, c.throttled_s)
            for low, got, high in zip(before, figures, after, strict=True):
                assert got is not None and low <= got <= high, (before, figures, after)
            checked.append((i, after))

        checked.append((-1, _stat(cg)))
        lab, att = _sampled(
            samplers,
            8.0,
            sup.port,
            check,
            until=lambda snaps: len(snaps) >= 12 and bool(RULES & _fired(snaps[-1])),
        )
        for snaps in (lab, att):
            last = snaps[-1]
            fired = _fired(last)
            assert fired & RULES, [d.message for d in last.diagnoses]
            win = analysis.window(snaps)
            idle = [s.host.idle_cores for s in win if s.host and s.host.idle_cores is not None]
            if "cpu_throttled" in fired:
                msg = next(d.message for d in last.diagnoses if d.rule == "cpu_throttled")
                assert msg.startswith(f"CPU limit 0.2 core: {WORKERS} workers throttled in "), msg
            else:  # the host had no idle core to spare (a busy machine): not the limit alone
                assert sum(idle) / len(idle) < cpulimit.IDLE_MIN_CORES, idle
        # attach's text (`attach --once`) names the limit and the last interval's share
        console = Console(width=160, record=True)
        console.print(render(att[-1]))
        assert "CPU limit 0.2 core, throttled in " in console.export_text()
        for snaps in (lab, att):
            # the interval figures: what cpu.stat gained between two samples
            mine = [next(c for c in s.cpu_cgroups if c.path == cg.path) for s in snaps[-2:]]
            assert mine[1].periods_delta == mine[1].nr_periods - mine[0].nr_periods  # type: ignore[operator]
            assert mine[1].throttled_delta == mine[1].nr_throttled - mine[0].nr_throttled  # type: ignore[operator]
        # the same workers out of the cgroup (moved to the hierarchy's root),
        # the same load: no limit, no throttling diagnosis
        cg.remove()
        lab, att = _sampled(samplers, 3.0, sup.port)
        for snaps in (lab, att):
            for s in snaps:
                assert not (RULES & _fired(s)), [d.message for d in s.diagnoses]
            last = [c for c in snaps[-1].cpu_cgroups if set(c.pids) & {sup.worker_pids()[0]}]
            assert last and last[0].path != cg.path and last[0].cores is None, last
    finally:
        for sampler in samplers:
            sampler.close()
        cg.remove()
    assert not os.path.exists(cg.dir)


def _fired(s: Snapshot) -> set[str]:
    return {d.rule for d in s.diagnoses}


def test_the_labs_cpu_limit_puts_the_server_in_a_cgroup_of_its_own_and_removes_it() -> None:
    """`--cpu-limit`: every process of the server in the cgroup, its quota the cores asked;
    after close the cgroup is gone and so are the processes. A start whose limit cannot
    be set fails with one line and leaves neither behind."""
    from conftest import assert_all_gone
    from lab import cpu_limit
    from lab.session import Session
    from servers.config import ServerConfig

    session = Session(ServerConfig(model="many_accepts", workers=2), None, cpu_limit=0.5)
    try:
        session.start()
    except cpu_limit.CpuLimitError as e:
        session.close()
        pytest.skip(str(e))
    sup = session.supervisor
    cg = session.cgroup
    assert sup is not None and cg is not None
    pids = sup.pids()
    try:
        assert sorted(cg.pids()) == sorted(pids)
        assert _limit_files(cg) == (50_000, 100_000)
        snap = session.sample()
        assert snap is not None
        [mine] = [c for c in snap.cpu_cgroups if c.path == cg.path]
        assert mine.cores == 0.5 and set(mine.pids) == set(pids)
    finally:
        session.close()
    assert_all_gone(pids)
    assert not os.path.exists(cg.dir)

    # a cgroup that cannot be made: the start fails in one line, nothing is left running
    class Refused(LimitedCgroup):
        def __init__(self, name: str, cores: float | None) -> None:
            raise CgroupError("cannot make cgroup x: Permission denied (run as root)")

    original = cpu_limit.LimitedCgroup
    cpu_limit.LimitedCgroup = Refused  # type: ignore[misc]
    session = Session(ServerConfig(model="many_accepts", workers=2), None, cpu_limit=0.5)
    try:
        with pytest.raises(cpu_limit.CpuLimitError, match=r"^--cpu-limit: cannot make cgroup"):
            session.start()
        sup = session.supervisor
        assert sup is not None
        pids = sup.pids()
    finally:
        cpu_limit.LimitedCgroup = original  # type: ignore[misc]
        session.close()
    assert_all_gone(pids)


def test_a_stale_lab_cgroup_of_a_killed_serverscope_is_removed_by_the_next() -> None:
    """Left by a serverscope killed with SIGKILL (its pid gone, nothing in it): the next
    lab limit removes it. A live serverscope's is left alone."""
    from lab import cpu_limit

    class NoServer:
        def pids(self) -> list[int]:
            return []

    try:
        dead = LimitedCgroup(f"{cpu_limit.PREFIX}{2**22 + 7}-0", 0.5)  # no such pid
    except CgroupError as e:
        pytest.skip(f"no cgroup of our own: {e}")
    alive = LimitedCgroup(f"{cpu_limit.PREFIX}{os.getpid()}-999", 0.5)
    new = None
    try:
        new = cpu_limit.confine(NoServer(), 0.3)
        assert not os.path.exists(dead.dir)
        assert os.path.exists(alive.dir)
    finally:
        for cg in (dead, alive, new):
            cpu_limit.release(cg)
