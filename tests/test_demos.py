"""Every guided demo, played headless and short: its expected diagnosis must appear.

Steps that should show a phenomenon run until it appears (at most EXPECT_S seconds);
contrast steps run CONTRAST_S seconds and must not show the phenomenon they contrast with.
Demos whose models are not built yet are skipped, naming the missing models.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from lab import catalogue, scenarios
from lab.catalogue import SCENARIOS
from lab.player import play
from lab.scenarios import MASTER, Fault, Scenario
from plumbing.process import pid_alive
from servers import models
from telemetry.snapshot import Snapshot

EXPECT_S = 12.0  # cap for a step with expectations (it stops as soon as they appear)
CONTRAST_S = 3.0
FAULT_AFTER_S = 1.5


SATURATED_IDLE_CORES = 0.5  # below this many idle cores on average, the host is saturated


def _short(scenario: Scenario) -> Scenario:
    steps = []
    for st in scenario.steps:
        secs = EXPECT_S if st.expect else CONTRAST_S
        fault = st.fault
        if fault is not None:
            fault = dataclasses.replace(fault, after_s=min(fault.after_s, FAULT_AFTER_S))
        steps.append(dataclasses.replace(st, seconds=secs, fault=fault))
    return dataclasses.replace(scenario, steps=tuple(steps))


def _missing_models(scenario: Scenario) -> list[str]:
    built = {s.name for s in models.available()}
    return [m for m in scenario.models if m not in built]


def test_the_six_demos_are_listed() -> None:
    assert list(SCENARIOS) == ["skew", "starvation", "overflow", "hol", "master", "gil"]
    lines = catalogue.list_lines()
    assert len(lines) == 6 and all(line.split()[0] in SCENARIOS for line in lines)
    for s in SCENARIOS.values():
        assert s.steps and any(st.expect for st in s.steps), s.name
        for st in s.steps:
            assert st.narration and all(line.strip() for line in st.narration)
            assert set(st.expect) <= RULE_IDS and set(st.absent) <= RULE_IDS


RULE_IDS = {
    "accept_skew",
    "starvation",
    "accept_queue_overflow",
    "master_bottleneck",
    "gil_cap",
    "reuseport_backlog",
    "server_wait",
    "stalled_owner",
}


def test_rule_ids_match_the_diagnosis_module() -> None:
    from telemetry import diagnosis

    assert {rule.__name__ for rule in diagnosis.RULES} == RULE_IDS


def test_with_seconds_keeps_faults_inside_the_step() -> None:
    s = scenarios.with_seconds(SCENARIOS["hol"], 4)
    assert all(st.seconds == 4 for st in s.steps)
    assert all(st.fault is not None and st.fault.after_s < 4 for st in s.steps)
    assert Fault("burn", slot=MASTER, every_s=2).describe().startswith("burn CPU in the master")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_demo_shows_its_diagnosis(name: str) -> None:
    scenario = SCENARIOS[name]
    missing = _missing_models(scenario)
    if missing:
        pytest.skip(f"demo {name} needs model(s) not built yet: {', '.join(missing)}")
    pids: list[int] = []
    idle: dict[int, list[float]] = {}  # step -> the host's idle cores, sample by sample

    def on_sample(i: int, snap: Snapshot, t: float) -> None:
        if snap.model is not None:
            pids.append(snap.model.root_pid)
        pids.extend(w.pid for w in snap.live_workers)
        if snap.host is not None and snap.host.idle_cores is not None:
            idle.setdefault(i, []).append(snap.host.idle_cores)

    t0 = time.monotonic()
    results = play(_short(scenario), stop_when_seen=True, on_sample=on_sample)
    took = time.monotonic() - t0
    assert len(results) == len(scenario.steps)
    for r in results:
        where = f"{name} step {r.index + 1} ({r.step.config.model})"
        assert r.error is None, f"{where}: {r.error}"
        assert r.samples > 0, where
        late = {k: t for k, t in r.seen.items() if k in r.step.expect}
        if r.step.min_seconds:  # the shortest step `--seconds` allows shows it too
            late = {k: t for k, t in late.items() if t > r.step.min_seconds}
        else:
            late = {}
        steps_idle = idle.get(r.index, [])
        mean_idle = sum(steps_idle) / len(steps_idle) if steps_idle else None
        if (r.missing or late) and mean_idle is not None and mean_idle < SATURATED_IDLE_CORES:
            # other work held every core: the GIL cap (which needs an idle core) and a
            # burning master cannot be told from a busy machine, and rightly do not fire
            pytest.skip(
                f"{where}: the host had {mean_idle:.2f} idle cores on average (other "
                f"work); {r.missing or late} cannot be judged on a saturated machine"
            )
        assert not r.missing, f"{where}: {r.missing} never appeared; saw {r.messages}"
        assert not r.unwanted, f"{where}: contrast step showed {r.unwanted}: {r.messages}"
        assert not late, (where, late)
        if r.step.fault is not None:
            assert r.fault_done, f"{where}: the fault was not applied"
            assert not any(x.startswith("no ") for x in r.fault_done), r.fault_done
    print(f"{name}: {took:.1f} s; " + "; ".join(f"{r.seen}" for r in results))
    # nothing left behind
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in set(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in set(pids) if pid_alive(p)]


def test_a_seconds_too_short_for_a_step_is_refused_in_one_line(capsys) -> None:
    from commands import main as cli

    for name in ("master", "gil"):  # both reported "not shown" at --seconds 4
        assert cli.main(["demo", name, "--seconds", "4", "--headless"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"serverscope demo: --seconds 4 is too short for demo {name}")
        assert "\n" not in err
    assert scenarios.too_short(SCENARIOS["master"], 10) is None
    # every step with a phenomenon to show says how long it needs
    for sc in SCENARIOS.values():
        for st in sc.steps:
            if st.expect and sc.name != "overflow":  # (the overflow demo is reworked apart)
                assert st.min_seconds > 0, (sc.name, st.title)


# -- a rule fix found while tuning the demos ------------------------------------------------


def test_master_bottleneck_ignores_worker_threads_inside_the_master() -> None:
    """goroutines: the event-loop threads live in the root process, so the root's process
    CPU is theirs, not a master's; it fired `master_bottleneck` on the gil demo."""
    from telemetry import analysis, diagnosis, synthetic

    def goroutines_like(root_cpu: float, loops: list[float]) -> list:  # type: ignore[type-arg]
        win = synthetic.series(
            20,
            model="goroutines",
            threads=True,
            workers=len(loops),
            cpu=loops,
            master_cpu=root_cpu,
            dispatches_delta=40,
            states=["working"],
        )
        return [
            dataclasses.replace(
                s, workers=tuple(dataclasses.replace(w, pid=1000) for w in s.workers)
            )
            for s in win
        ]

    # 88% = two loops at 44% + the acceptor's 0%: no master bottleneck
    assert diagnosis.master_bottleneck(analysis.window(goroutines_like(88.0, [44.0, 44.0]))) is None
    # an acceptor thread that itself burns a core still counts
    d = diagnosis.master_bottleneck(analysis.window(goroutines_like(130.0, [20.0, 20.0])))
    assert d is not None and "master 90% CPU" in d.message
    # cluster (process workers) unchanged
    win = synthetic.series(20, model="cluster", master_cpu=98.0, cpu=[20.0], dispatches_delta=50)
    assert diagnosis.master_bottleneck(win) is not None


@pytest.mark.slow
def test_overflow_demo_drops_handshakes_and_connects_take_a_second_or_more() -> None:
    """The overflow step must show what it promises: real SYN drops (ListenOverflows moves)
    and connect times clustered at whole seconds. With GET / (no CPU cost) single emptied
    its queue at 15,000 req/s and connect p99 read 1.4 ms."""
    scenario = SCENARIOS["overflow"]
    last: list[Snapshot] = []
    overflows = [0]

    def on_sample(i: int, snap: Snapshot, t: float) -> None:
        last[:] = [snap]
        if snap.kernel is not None:
            overflows[0] += snap.kernel.overflows_delta or 0

    (result,) = play(scenario, seconds=8, on_sample=on_sample)
    assert result.error is None and result.ok, result.messages
    c = last[0].client
    assert c is not None
    assert overflows[0] > 0  # the kernel dropped handshakes during the step
    assert c.connect_ms.p99 >= 900, c.connect_ms
    assert sum(c.connect_seconds) >= 1, c.connect_seconds  # counted by second on screen
