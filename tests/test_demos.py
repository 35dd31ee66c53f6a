"""Every guided demo, played headless and short: its expected diagnosis must appear.

Steps that should show a phenomenon run until it appears (at most EXPECT_S seconds);
contrast steps run CONTRAST_S seconds and must not show the phenomenon they contrast with.
Demos whose models are not built yet are skipped, naming the missing models.
"""

from __future__ import annotations

import dataclasses
import io
import time

import pytest

from lab import catalogue, scenarios
from lab.catalogue import SCENARIOS
from lab.player import play
from lab.scenarios import MASTER, Fault, Scenario
from plumbing.process import pid_alive
from servers import models
from values.snapshot import Snapshot

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


def test_the_seven_demos_are_listed() -> None:
    assert list(SCENARIOS) == ["skew", "starvation", "overflow", "hol", "master", "gil", "remedy"]
    lines = catalogue.list_lines()
    assert len(lines) == 7 and all(line.split()[0] in SCENARIOS for line in lines)
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
    "cpu_throttled",
    "cpu_oversubscribed",
}


def test_rule_ids_match_the_diagnosis_module() -> None:
    from judging import diagnosis

    assert {rule.__name__ for rule in diagnosis.RULES} == RULE_IDS


def test_with_seconds_keeps_faults_inside_the_step() -> None:
    s = scenarios.with_seconds(SCENARIOS["hol"], 4)
    assert all(st.seconds == 4 for st in s.steps)
    assert all(st.fault is not None and st.fault.after_s < 4 for st in s.steps)
    assert Fault("burn", slot=MASTER, every_s=2).describe().startswith("burn CPU in the master")


@pytest.mark.solo
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
        if (
            (r.missing or r.unshown or late)
            and mean_idle is not None
            and mean_idle < SATURATED_IDLE_CORES
        ):
            # other work held every core: the GIL cap (which needs an idle core) and a
            # burning master cannot be told from a busy machine, and rightly do not fire
            pytest.skip(
                f"{where}: the host had {mean_idle:.2f} idle cores on average (other "
                f"work); {r.missing or late} cannot be judged on a saturated machine"
            )
        assert not r.missing, f"{where}: {r.missing} never appeared; saw {r.messages}"
        assert not r.unshown, f"{where}: the narration promised {r.unshown}; saw {r.shown}"
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
            if st.expect:
                assert st.min_seconds > 0, (sc.name, st.title)


def test_every_demo_load_is_a_preset_or_says_it_is_custom_with_its_load_options() -> None:
    """The overflow and GIL demos ran loads named `storm-cpu` and `cpu-heavy`, which
    `load --list-presets` does not offer, and the starvation demo one named
    `keepalive-idle` with a third of the preset's clients: nobody could run them."""
    from commands.load import add_parser, level_from_args
    from commands.main import build_parser
    from loadgen.levels import PRESETS

    parser = build_parser()
    for sc in SCENARIOS.values():
        for st in sc.steps:
            lv = st.level
            where = (sc.name, st.title, lv.name)
            if lv.name in PRESETS:
                assert lv.preset == lv.name, where  # the preset itself, duration aside
                assert st.load_line == f"load: the {lv.name} preset", where
                continue
            assert lv.name == "custom", where
            head, _, flags = st.load_line.partition("`serverscope load URL ")
            assert head == "load: custom, as " and flags.endswith("`"), st.load_line
            a = parser.parse_args(["load", "http://127.0.0.1:1/", *flags[:-1].split()])
            again = level_from_args(a).with_(duration=lv.duration)
            assert again == lv, (where, again)
    assert add_parser  # (the parser `load` builds is the one the test read the options with)


def test_the_headless_demo_view_shows_waiting_requests_as_the_tui_does() -> None:
    """The master demo's last frame read `0 req/s  p99 83.0 ms` under a narration of
    latency climbing: the headless view showed completed requests only, while every
    client waited 10 s. It shows the latency with the waiting requests, and the waiting."""
    from rich.console import Console

    import synthetic
    from loadgen.stats import LoadStats, Percentiles
    from text.demo import demo_view

    client = LoadStats(
        time=0.0,
        elapsed=12.0,
        level="storm",
        clients=100,
        target_rate=None,
        running=True,
        paused=False,
        requests=5000,
        in_flight=100,
        latency_ms=Percentiles(p99=83.0, count=5000),
        latency_all_ms=Percentiles(p99=9800.0, count=5100),
        connect_ms=Percentiles(p99=16.0, count=5100),
        oldest_wait_ms=9850.0,
        rps=0.0,
    )
    sc = SCENARIOS["master"]
    snap = synthetic.snapshot(model="cluster", client=client)
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(demo_view(sc, 1, sc.steps[1], snap, 12.0, {"stalled": 6.0}))
    text = console.export_text()
    assert "0 req/s" in text and "latency p99 9800 ms" in text, text
    assert "waiting 100, oldest 9850 ms" in text, text
    assert "0 req/s while requests wait 2 s or more: seen at 6.0 s" in text, text
    assert "load: the storm preset" in text, text


# -- a rule fix found while tuning the demos ------------------------------------------------


def test_master_bottleneck_ignores_worker_threads_inside_the_master() -> None:
    """goroutines: the event-loop threads live in the root process, so the root's process
    CPU is theirs, not a master's; it fired `master_bottleneck` on the gil demo."""
    import synthetic
    from judging import analysis, master

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
    assert master.master_bottleneck(analysis.window(goroutines_like(88.0, [44.0, 44.0]))) is None
    # an acceptor thread that itself burns a core still counts
    d = master.master_bottleneck(analysis.window(goroutines_like(130.0, [20.0, 20.0])))
    assert d is not None and "master 90% CPU" in d.message
    # cluster (process workers) unchanged
    win = synthetic.series(20, model="cluster", master_cpu=98.0, cpu=[20.0], dispatches_delta=50)
    assert master.master_bottleneck(win) is not None


@pytest.mark.slow
def test_overflow_demo_drops_handshakes_and_connects_take_a_second_or_more() -> None:
    """The overflow step must show what it promises, every time: real SYN drops
    (ListenOverflows moves), the queue one past its backlog, connect p99 of 1 s or more and
    connects counted by second on screen. Under a closed loop it did half the time (4 runs:
    connect p99 4,088 ms, 7,127 ms, 0.8 ms, 0.2 ms): the clients it had just served
    reconnected into every freed slot and the dropped ones never got in."""
    scenario = _short(SCENARIOS["overflow"])
    last: list[Snapshot] = []
    for run in range(5):
        last.clear()
        (result,) = play(
            scenario, stop_when_seen=True, on_sample=lambda i, snap, t: last.append(snap)
        )
        where = f"run {run + 1} of 5"
        assert result.error is None, (where, result.error)
        assert result.ok, (where, result.missing, result.unshown, result.messages)
        c = last[-1].client
        assert c is not None and c.connect_ms.p99 >= 990, (where, c.connect_ms)
        assert sum(c.connect_seconds) >= 1, (where, c.connect_seconds)  # counted by second
        print(f"{where}: {result.seen} {result.shown}, {result.seconds:.1f} s")
