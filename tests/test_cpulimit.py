"""CPU limits: the cgroup files read right (v1 and v2, on trees made by the test), the
values through JSON, and the two rules fired and silenced on synthetic windows. The real
cgroup, real throttling and real workers are tests/test_cpulimit_real.py's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import synthetic
from judging import cpulimit, diagnosis
from judging.analyser import Analyser
from plumbing.cgroupfs import Hierarchy, parse_mountinfo
from readers.cgroupcpu import CgroupCpuReader, limit_of, parse_cpu_stat, parse_proc_cgroup
from values.cgroupcpu import CpuLimit, by_pid, cores_text
from values.snapshot import Snapshot

pytestmark = pytest.mark.timeout(30)

MOUNTINFO = (
    "30 24 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n"
    "31 24 0:27 / /sys/fs/cgroup/cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpuacct\n"
    "40 24 0:35 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw\n"
    "41 24 0:36 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
)


def test_mountinfo_finds_the_v1_cpu_hierarchy_not_cpuacct_and_the_v2_tree():
    hs = parse_mountinfo(MOUNTINFO)
    assert hs[1] == Hierarchy(1, "/sys/fs/cgroup/cpu", "/")
    assert hs[2] == Hierarchy(2, "/sys/fs/cgroup/unified", "/")
    joint = "30 24 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    assert parse_mountinfo(joint)[1].mount == "/sys/fs/cgroup/cpu,cpuacct"


def test_proc_cgroup_names_the_cpu_line_of_each_version():
    text = "12:memory:/m\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/s\n0::/user.slice/x\n"
    assert parse_proc_cgroup(text, 1) == "/docker/abc"
    assert parse_proc_cgroup(text, 2) == "/user.slice/x"
    assert parse_proc_cgroup("4:cpuacct:/a\n", 1) is None  # cpuacct is not cpu


def test_cpu_stat_both_versions_and_unknown_stays_none():
    v1 = "nr_periods 21\nnr_throttled 20\nthrottled_time 1496850050\nnr_bursts 0\n"
    assert parse_cpu_stat(v1) == (21, 20, pytest.approx(1.49685005))
    v2 = "usage_usec 9\nuser_usec 5\nnr_periods 7\nnr_throttled 3\nthrottled_usec 250000\n"
    assert parse_cpu_stat(v2) == (7, 3, 0.25)
    # a v2 tree without the cpu controller counts usage only: no throttling known
    assert parse_cpu_stat("usage_usec 9\nuser_usec 5\nsystem_usec 4\n") == (None, None, None)


def _v1_group(d: Path, quota: int, period: int = 100_000, stat: str = "") -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (d / "cpu.cfs_period_us").write_text(f"{period}\n")
    (d / "cpu.stat").write_text(stat or "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n")


def test_v1_limit_is_the_tightest_on_the_path(tmp_path: Path):
    h = Hierarchy(1, str(tmp_path), "/")
    _v1_group(tmp_path, -1)
    _v1_group(tmp_path / "pod", 50_000)  # 0.5 core on the parent
    _v1_group(tmp_path / "pod" / "c", -1)  # the container itself: no quota of its own
    _v1_group(tmp_path / "wide", 400_000)
    _v1_group(tmp_path / "wide" / "tight", 10_000, 50_000)  # 0.2 core
    assert limit_of(h, "/pod/c") == (True, "/pod", 50_000, 100_000)
    assert limit_of(h, "/wide/tight") == (True, "/wide/tight", 10_000, 50_000)
    assert limit_of(h, "/") == (False, None, None, None)
    assert limit_of(h, "/gone")[0] is None  # unreadable: unknown, not "no limit"


def test_v2_limit_from_cpu_max(tmp_path: Path):
    h = Hierarchy(2, str(tmp_path), "/")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "a" / "b" / "cpu.max").write_text("20000 100000\n")
    assert limit_of(h, "/a/b") == (True, "/a/b", 20_000, 100_000)
    assert limit_of(h, "/a") == (False, None, None, None)


def test_reader_groups_pids_by_cgroup_with_interval_deltas(tmp_path: Path):
    cg, proc = tmp_path / "cg", tmp_path / "proc"
    _v1_group(cg, -1)
    _v1_group(cg / "lim", 20_000, stat="nr_periods 10\nnr_throttled 6\nthrottled_time 500000000\n")
    for pid, path in ((11, "/lim"), (12, "/lim"), (13, "/")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(f"3:cpuset:/\n2:cpu:{path}\n0::/\n")
    reader = CgroupCpuReader({1: Hierarchy(1, str(cg), "/")}, proc=str(proc))
    first = {c.path: c for c in reader.read(0.0, [11, 12, 13, 99])}  # 99: gone
    assert set(first) == {"/", "/lim"}
    lim = first["/lim"]
    assert (lim.pids, lim.cores, lim.nr_periods, lim.nr_throttled) == ((11, 12), 0.2, 10, 6)
    assert lim.throttled_s == pytest.approx(0.5) and lim.periods_delta is None
    assert first["/"].limited is False and first["/"].cores is None
    (cg / "lim" / "cpu.stat").write_text(
        "nr_periods 15\nnr_throttled 10\nthrottled_time 800000000\n"
    )
    lim = {c.path: c for c in reader.read(0.25, [11, 12])}["/lim"]
    assert (lim.periods_delta, lim.throttled_delta) == (5, 4)
    assert lim.throttled_s_delta == pytest.approx(0.3) and lim.throttled_fraction == 0.8
    assert by_pid([lim])[12] is lim


def test_cores_text():
    assert [cores_text(c) for c in (0.2, 1.0, 1.5, 0.05, 4)] == [
        "0.2 core",
        "1 core",
        "1.5 cores",
        "0.05 core",
        "4 cores",
    ]


def test_cpu_cgroups_through_json_and_old_recordings_read():
    limit = CpuLimit("/lim", 1, (1001,), True, "/lim", 20_000, 100_000, 10, 6, 0.5, 5, 3, 0.25)
    snap = dataclasses.replace(synthetic.snapshot(), cpu_cgroups=(limit,))
    assert Snapshot.from_dict(snap.to_dict()) == snap
    old = snap.to_dict()
    del old["cpu_cgroups"]
    assert Snapshot.from_dict(old).cpu_cgroups == ()


# -- the rules ---------------------------------------------------------------------------


def _limited_series(
    n: int,
    *,
    throttled: list[int] | int = 2,
    periods: int = 3,
    cores: float | None = 0.2,
    host_cpu: float = 40.0,
    states: list[str] | None = None,
    pids: tuple[int, ...] = (1001, 1002, 1003, 1004),
) -> list[Snapshot]:
    """`n` snapshots 0.25 s apart, the 4 workers in one cgroup limited to `cores`, each
    interval counting `periods` periods of which `throttled` (per sample, or each) ran
    out of quota, the host busy `host_cpu` % (of 200)."""
    analyser = Analyser()
    out = []
    for k in range(n):
        thr = throttled[k % len(throttled)] if isinstance(throttled, list) else throttled
        quota = None if cores is None else round(cores * 100_000)
        cg = CpuLimit(
            path="/lim",
            version=1,
            pids=pids,
            limited=cores is not None,
            limit_path="/lim" if cores is not None else None,
            quota_us=quota,
            period_us=None if cores is None else 100_000,
            nr_periods=periods * (k + 1),
            nr_throttled=thr * (k + 1),
            throttled_s=0.07 * thr * (k + 1),
            periods_delta=periods if k else None,
            throttled_delta=thr if k else None,
            throttled_s_delta=0.07 * thr if k else None,
        )
        raw = synthetic.snapshot(
            seq=k,
            time=1000.0 + 0.25 * k,
            interval_s=0.25 if k else None,
            host_cpu=host_cpu,
            states=states or ["working"] * 4,
            cpu=[5.0] * 4,
        )
        out.append(analyser.annotate(dataclasses.replace(raw, cpu_cgroups=(cg,))))
    return out


def _rules(win: list[Snapshot]) -> set[str]:
    return {d.rule for d in diagnosis.diagnose(win)} & {"cpu_throttled", "cpu_oversubscribed"}


def test_throttled_with_idle_cores_fires_and_names_limit_and_share():
    win = _limited_series(20)  # 5 s: 2 of 3 periods throttled each 0.25 s
    d = cpulimit.cpu_throttled(win)
    assert d is not None
    assert d.message.startswith("CPU limit 0.2 core: 4 workers throttled in 67% of periods")
    assert "(38/57, p < 1e-9)" in d.message and "cgroup /lim" in d.message
    assert "1.6 cores idle" in d.message
    assert _rules(win) == {"cpu_throttled", "cpu_oversubscribed"}
    assert any(d.rule == "cpu_throttled" for d in win[-1].diagnoses)  # through the analyser


def test_no_limit_no_diagnosis():
    assert _rules(_limited_series(20, cores=None, throttled=0)) == set()
    # a limit that never bites: periods, no throttling
    assert _rules(_limited_series(20, throttled=0)) == set()


def test_throttled_but_no_idle_core_is_not_the_limit_alone():
    win = _limited_series(20, host_cpu=190.0)
    assert cpulimit.cpu_throttled(win) is None
    assert cpulimit.cpu_oversubscribed(win) is not None  # the worker count still is


def test_a_burst_or_too_little_evidence_does_not_fire():
    # throttled in one sample of 20 (3 of 57 periods): neither persistent nor significant
    assert _rules(_limited_series(20, throttled=[3] + [0] * 19)) == set()
    # a second of measurement: too short to judge
    assert _rules(_limited_series(5)) == set()
    # every period throttled, 10 of them in 2.5 s: the fewest judged
    assert cpulimit.cpu_throttled(_limited_series(11, periods=1, throttled=1)) is not None


def test_oversubscribed_needs_more_running_workers_than_cores():
    one_busy = _limited_series(20, states=["working", "waiting", "waiting", "waiting"])
    assert cpulimit.cpu_throttled(one_busy) is not None
    assert cpulimit.cpu_oversubscribed(one_busy) is None
    d = cpulimit.cpu_oversubscribed(_limited_series(20))
    assert d is not None
    assert d.message.startswith(
        "more busy workers than the CPU limit allows cores: 4 workers busy on average under "
        "a limit of 0.2 core"
    )
    assert "~0.05 core each" in d.message and "run at most 1 worker" in d.message


def test_limit_on_processes_that_are_not_workers_is_not_judged():
    assert _rules(_limited_series(20, pids=(1000,))) == set()  # only the master in it


def test_the_workers_panel_shows_the_limit_and_the_windows_throttling():
    """The title the terminal draws: throttled periods over the window (as the rule reads
    them), not one 0.25 s interval's 2 of 3."""
    from test_tui_truth import on_screen, widget_text
    from tui.worker_table import WorkerTable

    snaps = _limited_series(20)

    def check(app, screen) -> None:  # type: ignore[no-untyped-def]
        text = widget_text(app, screen.query_one(WorkerTable)).splitlines()[0]
        assert "─ workers · CPU limit 0.2 core, throttled in 67% of periods ─" in text

    on_screen(snaps, check)
    # no limit: the plain title
    plain = _limited_series(3, cores=None, throttled=0)

    def plain_title(app, screen) -> None:  # type: ignore[no-untyped-def]
        assert screen.query_one(WorkerTable).border_title == "workers"

    on_screen(plain, plain_title)


def test_limit_line_says_unknown_and_nothing_when_no_limit():
    from values.cgroupcpu import limit_line

    unread = CpuLimit("/..", 1, (5,), None)
    assert limit_line([unread], {5}) == "CPU limit unknown"
    assert limit_line([CpuLimit("/", 1, (5,), False)], {5}) is None
    assert limit_line([unread], {6}) is None  # not the workers' cgroup


def test_prometheus_export_carries_the_limit_and_cpu_stat_and_leaves_unknown_out():
    parser = pytest.importorskip("prometheus_client.parser")
    from prometheus_client import CollectorRegistry, generate_latest

    from export.prometheus import SnapshotCollector

    last = _limited_series(3)[-1]
    unread = CpuLimit("/other", 1, (1000,), None)  # the master's, unreadable
    snap = dataclasses.replace(last, cpu_cgroups=(*last.cpu_cgroups, unread))
    collector = SnapshotCollector()
    collector.update(snap)
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    fams = {f.name: f.samples for f in parser.text_string_to_metric_families(text)}
    cg = last.cpu_cgroups[0]

    def values(name: str) -> dict[str, float]:
        return {s.labels["cgroup"]: s.value for s in fams[name]}

    assert values("serverscope_cgroup_cpu_limit_cores") == {"/lim": 0.2}
    assert values("serverscope_cgroup_cpu_periods") == {"/lim": cg.nr_periods}
    assert values("serverscope_cgroup_cpu_throttled_periods") == {"/lim": cg.nr_throttled}
    assert values("serverscope_cgroup_cpu_throttled_seconds") == {
        "/lim": pytest.approx(cg.throttled_s)
    }
    assert values("serverscope_cgroup_processes") == {"/lim": 4, "/other": 1}
    assert {s.labels["model"] for s in fams["serverscope_cgroup_processes"]} == {"many_accepts"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0", "must be between 0.01 and 1024 cores, got 0"),
        ("-1", "must be between 0.01 and 1024 cores, got -1"),
        ("nan", "expected a number of cores (e.g. 0.5), got 'nan'"),
        ("half", "expected a number of cores (e.g. 0.5), got 'half'"),
    ],
)
def test_a_bad_cpu_limit_is_one_line(text: str, reason: str):
    import argparse

    from commands.cpu_limit_arg import cores

    with pytest.raises(argparse.ArgumentTypeError) as e:
        cores(text)
    assert str(e.value) == reason
    assert cores("0.2") == 0.2


def test_the_worker_detail_names_its_cgroup_limit_and_throttling():
    from tui import worker_detail

    last = _limited_series(3)[-1]
    w = last.live_workers[0]
    text = [t.plain for t in worker_detail.lines(w, last)]
    assert (
        "cgroup /lim (v1): CPU limit 0.2 core; throttled in 67% of periods in the last "
        "interval (2/3, cpu.stat)" in text
    )
    unlimited = _limited_series(2, cores=None, throttled=0)[-1]
    assert "cgroup /lim (v1): no CPU limit" in [
        t.plain for t in worker_detail.lines(unlimited.live_workers[0], unlimited)
    ]
    unread = dataclasses.replace(last, cpu_cgroups=())
    assert not any("cgroup" in t.plain for t in worker_detail.lines(w, unread))


def test_a_removed_cgroup_reads_unknown_then_its_processes_new_cgroup(tmp_path: Path):
    """Its cached limit is not shown once its files are gone; the pids are read again at
    once (a process is otherwise re-read every MOVED_S or so, staggered)."""
    import shutil

    cg, proc = tmp_path / "cg", tmp_path / "proc"
    _v1_group(cg, -1)
    _v1_group(cg / "lim", 20_000)
    (proc / "11").mkdir(parents=True)
    (proc / "11" / "cgroup").write_text("2:cpu:/lim\n")
    reader = CgroupCpuReader({1: Hierarchy(1, str(cg), "/")}, proc=str(proc))
    assert [c.cores for c in reader.read(0.0, [11])] == [0.2]
    shutil.rmtree(cg / "lim")
    (proc / "11" / "cgroup").write_text("2:cpu:/\n")
    [gone] = reader.read(0.25, [11])
    assert (gone.path, gone.limited, gone.cores, gone.nr_periods) == ("/lim", None, None, None)
    [now] = reader.read(0.5, [11])
    assert (now.path, now.limited) == ("/", False)
