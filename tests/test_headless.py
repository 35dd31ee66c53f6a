"""`serverscope run`: the whole-run summary, its JSON/CSV, and the exit statuses."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import synthetic
from commands import common
from commands import main as cli
from commands.common import exit_status
from conftest import assert_all_gone, wait_until
from lab import aggregate
from lab.aggregate import SummaryBuilder
from lab.headless import run_headless
from lab.session import Session
from loadgen.levels import PRESETS, LoadError
from plumbing.loghist import merge
from plumbing.process import pid_alive
from servers.config import ServerConfig
from values.findings import Diagnosis
from values.snapshot import Snapshot

SRC = str(Path(__file__).resolve().parents[1] / "src")
JSON_KEYS = {
    "rps",
    "latency_ms",
    "connect_ms",
    "errors",
    "accept_jain",
    "accept_top_share",
    "cpu_jain",
    "max_queue",
    "overflows",
    "diagnoses",
    "workers",
}


def _serverscope(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "serverscope", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# -- the summary over synthetic snapshots ---------------------------------------------------


def _snap(t: float, accepts_total: list[int], **kw: object) -> Snapshot:
    return synthetic.snapshot(time=1000.0 + t, accepts_total=accepts_total, **kw)  # type: ignore[arg-type]


def test_summary_counts_from_the_baseline_and_over_the_whole_run() -> None:
    b = SummaryBuilder("many_accepts", "many_accepts (workers=4)", PRESETS["burst"])
    b.start_clock(1000.0)
    b.add(_snap(0.0, [5, 5, 5, 5]))  # baseline: before the load
    b.add(_snap(0.25, [50, 6, 5, 5], queue=3, overflows_delta=2, drops_delta=3))
    skew = Diagnosis("accept_skew", "warning", "accept skew: worker 0 took 90%")
    snap = _snap(0.5, [95, 10, 5, 5], queue=40, overflows_delta=5, drops_delta=5)
    b.add(Snapshot(**{**{f: getattr(snap, f) for f in snap.__slots__}, "diagnoses": (skew,)}))
    b.add(_snap(0.75, [95, 10, 5, 5], queue=1))
    s = b.finish(None, duration_s=0.75, load_error="no load")
    assert [w.accepts for w in s.workers] == [90, 5, 0, 0]
    assert s.total_accepts == 95
    assert s.accept_top_share == pytest.approx(90 / 95)
    assert s.accept_jain == pytest.approx(95**2 / (4 * (90**2 + 5**2)))
    assert s.accept_top_worker == "worker 0"
    assert s.max_queue == 40 and s.queue_limit == 511
    assert (s.overflows, s.drops) == (7, 8)
    assert [(d.rule, d.first_s, d.samples) for d in s.diagnoses] == [("accept_skew", 0.5, 1)]
    assert len(s.series) == 3 and s.series[1]["diagnoses"] == "accept_skew"
    assert not s.ok and exit_status(s.ok) == common.EXIT_FAILED
    d = s.to_json_dict()
    assert set(d) >= JSON_KEYS
    assert d["workers"][0]["accept_share"] == pytest.approx(90 / 95, abs=1e-4)
    assert "namespace" in d["overflows_scope"]
    json.dumps(d)  # plain data


def test_summary_counts_a_worker_first_seen_mid_run_from_zero() -> None:
    b = SummaryBuilder("prefork", "prefork", PRESETS["burst"])
    b.add(_snap(0.0, [10], workers=1))
    b.add(_snap(0.25, [12, 7], workers=2))  # slot 1 spawned during the run
    s = b.finish(None, duration_s=0.25)
    assert [w.accepts for w in s.workers] == [2, 7]


def test_summary_phases_are_the_run_s_last_cumulative_minus_the_baseline() -> None:
    b = SummaryBuilder("prefork", "prefork", PRESETS["burst"])
    # baseline: 10 connections per worker that waited 1 ms, before the load
    b.add(_snap(0.0, [0], queue_ms=1.0, server_ms=0.1, service_ms=2.0, phase_n=[10]))
    # during the run: 30 more per worker, waiting 4.2 s (4 workers: 120)
    base = synthetic.hist(1.0, 10)
    more = synthetic.hist(4200.0, 30)
    snap = _snap(1.0, [0], queue_ms=1.0, server_ms=0.1, service_ms=2.0, phase_n=[40])
    grown = tuple(
        dataclasses.replace(w, phases=dataclasses.replace(w.phases, queue=base.plus(more)))
        for w in snap.workers
        if w.phases is not None
    )
    overall = dataclasses.replace(snap.phases, queue=merge([w.phases.queue for w in grown]))
    b.add(dataclasses.replace(snap, workers=grown, phases=overall))
    s = b.finish(None, duration_s=1.0)
    d = s.to_json_dict()
    assert d["queue_wait_ms"]["count"] == 120
    assert d["queue_wait_ms"]["p50"] == pytest.approx(4200.0, rel=0.0625)
    assert d["queue_wait_ms"]["p99"] == pytest.approx(4200.0, rel=0.0625)
    assert d["queue_wait_ms"]["max"] <= 4200.0 * 1.0625
    assert d["service_ms"]["count"] == 120 and d["service_ms"]["p90"] == pytest.approx(2.0, 0.07)
    assert set(d["server_wait_ms"]) == {"p50", "p90", "p99", "max", "count"}
    json.dumps(d)


def test_unmeasured_phases_are_null_in_the_json_not_zero() -> None:
    b = SummaryBuilder("many_accepts", "many_accepts", PRESETS["burst"])
    b.add(_snap(0.0, [0]))
    b.add(_snap(0.25, [3]))
    d = b.finish(None, duration_s=0.25).to_json_dict()
    assert d["queue_wait_ms"] is None and d["server_wait_ms"] is None and d["service_ms"] is None
    # attach with eBPF: queue wait alone
    b = SummaryBuilder("nginx", "nginx", PRESETS["burst"])
    b.add(_snap(0.0, [0], queue_ms=3.0, worker_phases=False))
    b.add(_snap(0.25, [0], queue_ms=3.0, worker_phases=False, phase_n=[5]))
    d = b.finish(None, duration_s=0.25).to_json_dict()
    assert d["queue_wait_ms"]["count"] == 20 and d["server_wait_ms"] is None


# -- real runs ------------------------------------------------------------------------------


def test_run_headless_sums_up_a_short_run(tmp_path: Path) -> None:
    level = PRESETS["storm"].with_(clients=10, duration=1.5)
    seen: list[float] = []
    s = run_headless(
        ServerConfig(model="many_accepts", workers=2),
        level,
        on_sample=lambda snap, t: seen.append(t),
        record=str(tmp_path / "rec.jsonl"),
    )
    assert s.ok, (s.server_error, s.load_error)
    assert s.result is not None and s.result.requests > 0 and s.rps > 0
    assert len(s.workers) == 2 and s.total_accepts > 0
    assert s.accept_jain is not None and 0.5 <= s.accept_jain <= 1.0
    assert s.latency.p99 > 0 and s.connect.count > 0
    assert seen and s.samples >= len(seen)
    aggregate.write_json(str(tmp_path / "s.json"), s.to_json_dict())
    aggregate.write_csv(str(tmp_path / "s.csv"), s)
    data = json.loads((tmp_path / "s.json").read_text())
    assert set(data) >= JSON_KEYS and data["rps"] > 0
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == len(s.series) and set(rows[0]) == set(aggregate.CSV_FIELDS)
    assert (tmp_path / "rec.jsonl").read_text().count("\n") > 2


def test_a_server_dying_mid_run_is_reported() -> None:
    pids: list[int] = []

    def kill_it(snap: Snapshot, t: float) -> None:
        if snap.model is not None and not pids:
            pids.append(snap.model.root_pid)
            pids.extend(w.pid for w in snap.live_workers)
            os.kill(snap.model.root_pid, signal.SIGKILL)

    s = run_headless(
        ServerConfig(model="single"), PRESETS["light"].with_(duration=10), on_sample=kill_it
    )
    assert s.server_died and not s.ok and exit_status(s.ok) == 1
    assert "single exited" in (s.server_error or "")
    assert s.duration_s < 8
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, "server pids gone")


def test_a_load_generator_dying_mid_run_is_reported() -> None:
    sessions: list[Session] = []

    def factory(*args: object, **kw: object) -> Session:
        sessions.append(Session(*args, **kw))  # type: ignore[arg-type]
        return sessions[-1]

    killed: list[int] = []

    def kill_load(snap: Snapshot, t: float) -> None:
        runner = sessions[0].runner
        if runner is not None and runner.pid and t > 0.3 and not killed:
            killed.append(runner.pid)
            os.kill(runner.pid, signal.SIGKILL)

    s = run_headless(
        ServerConfig(model="single"),
        PRESETS["light"].with_(duration=10),
        on_sample=kill_load,
        session_factory=factory,
    )
    assert not s.ok and exit_status(s.ok) == 1 and not s.server_died
    assert "load generator exited" in (s.load_error or "")


def test_a_load_that_cannot_start_raises_and_leaves_nothing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import loadgen.runner

    def refuse(clients: int) -> int:
        raise LoadError("10 clients need about 74 open files but the limit is 16")

    monkeypatch.setattr(loadgen.runner, "check_fd_limit", refuse)
    sessions: list[Session] = []

    def factory(*args: object, **kw: object) -> Session:
        sessions.append(Session(*args, **kw))  # type: ignore[arg-type]
        return sessions[-1]

    with pytest.raises(LoadError):
        run_headless(ServerConfig(model="single"), PRESETS["burst"], session_factory=factory)
    assert sessions[0].supervisor is None  # closed
    # and through the CLI: one line, exit 2
    assert cli.main(["run", "--model", "single", "--duration", "1"]) == common.EXIT_START


# -- the command ----------------------------------------------------------------------------


def test_run_command_prints_a_summary_and_writes_json_and_csv(tmp_path: Path) -> None:
    out_json, out_csv = tmp_path / "run.json", tmp_path / "run.csv"
    p = _serverscope(
        "run",
        "--model",
        "reuseport",
        "--workers",
        "2",
        "--load",
        "storm",
        "--duration",
        "1.5",
        "--json",
        str(out_json),
        "--csv",
        str(out_csv),
    )
    assert p.returncode == 0, p.stderr
    for text in ("Requests/sec", "accept imbalance", "max accept queue", "ListenOverflows"):
        assert text in p.stdout, p.stdout
    assert "namespace-wide" in p.stdout
    data = json.loads(out_json.read_text())
    assert set(data) >= JSON_KEYS
    assert data["model"] == "reuseport" and len(data["workers"]) == 2
    assert data["rps"] > 0 and data["latency_ms"]["p99"] > 0
    assert out_csv.read_text().startswith("t_s,rps,")


def test_run_does_a_fault_at_its_second_and_says_so(tmp_path: Path) -> None:
    """`run --fault` (as `fix --fault`): the worker in the slot is paused 0.5 s into the
    load, the summary names it with its pid, and it is gone with the run."""
    out_json = tmp_path / "run.json"
    p = _serverscope(
        "run",
        *("--model", "reuseport", "--workers", "2", "--load", "steady", "--duration", "1.5"),
        *("--fault", "pause:1@0.5", "--json", str(out_json)),
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(out_json.read_text())
    (done,) = data["faults"]
    m = re.fullmatch(r"pause worker 1 \(pid (\d+)\) at (\d+\.\d+) s", done)
    assert m and 0.5 <= float(m[2]) < 1.5, done  # at its time, not before (late: load)
    assert int(m[1]) == data["workers"][1]["pid"]
    assert_all_gone([w["pid"] for w in data["workers"]])  # the stopped one too
    assert f"fault: {done}" in p.stdout and "the fault was not done" not in p.stdout


def test_run_on_a_busy_port_fails_in_one_line_with_status_2() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = _serverscope("run", "--model", "single", "--port", str(port), "--duration", "1")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Address already in use" in lines[0], p.stderr


def test_run_refuses_bad_arguments_in_one_line() -> None:
    p = _serverscope("run", "--model", "nosuch", "--duration", "1")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "unknown model" in p.stderr
    p = _serverscope("run", "--model", "single", "--duration", "-1")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    p = _serverscope("run", "--model", "single", "--workers", "3", "--duration", "1")
    assert p.returncode == 2 and "has no --workers" in p.stderr
    p = _serverscope("run", "--model", "prefork", "--duration", "1", "--fault", "pause:0@2")
    assert p.returncode == 2 and p.stderr == "serverscope run: --fault at 2 s: the load lasts 1 s\n"


def test_run_refuses_a_zero_duration_in_one_sensible_line() -> None:
    p = _serverscope("run", "--model", "single", "--duration", "0")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "--duration" in lines[0] and "more than 0 seconds" in lines[0], lines[0]
    assert "between 0" not in lines[0]  # "between 0 and 86400, got '0'" contradicted itself
    p = _serverscope("run", "--model", "single", "--duration", "nan")
    assert p.returncode == 2 and "expected a number of seconds" in p.stderr, p.stderr


@pytest.mark.parametrize("option", ["--json", "--csv", "--record"])
def test_run_refuses_an_unwritable_output_before_running(option: str, tmp_path: Path) -> None:
    """It used to run the whole load first, then fail to write."""
    missing = tmp_path / "no" / "such" / "dir" / "x.out"
    p = _serverscope("run", "--model", "single", "--duration", "30", option, str(missing))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert option in lines[0] and "no such directory" in lines[0], lines[0]
    assert "Requests/sec" not in p.stdout  # nothing ran
    p = _serverscope("run", "--model", "single", "--duration", "30", option, str(tmp_path))
    assert p.returncode == 2 and "is a directory" in p.stderr, p.stderr


def test_load_and_compare_refuse_an_unwritable_output_before_running(tmp_path: Path) -> None:
    missing = str(tmp_path / "nodir" / "x.json")
    p = _serverscope("load", "http://127.0.0.1:9/", "--duration", "30", "--json", missing)
    assert p.returncode == 2 and "no such directory" in p.stderr, p.stderr
    p = _serverscope("compare", "--models", "single,prefork", "--duration", "30", "--svg", missing)
    assert p.returncode == 2 and "--svg" in p.stderr and "no such directory" in p.stderr


@pytest.mark.slow
def test_prefork_starvation_shows_the_waiting_clients_in_runs_json(tmp_path: Path) -> None:
    """prefork --max-workers 20 under keepalive-idle: 20 children pinned by idle
    keep-alive clients, the other ~280 clients wait in the accept queue. Completed-only
    figures hid them; the JSON must count them and their requests must add up."""
    out = tmp_path / "run.json"
    p = _serverscope(
        "run",
        "--model",
        "prefork",
        "--max-workers",
        "20",
        "--load",
        "keepalive-idle",
        "--duration",
        "8",
        "--json",
        str(out),
        timeout=90,
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    assert data["in_flight"] > 0, data
    assert data["oldest_wait_ms"] >= 2000, data["oldest_wait_ms"]
    assert data["sent"] == data["requests"] + sum(data["errors"].values()) + data["in_flight"]
    assert data["latency_incl_waiting_ms"]["max"] >= data["oldest_wait_ms"] - 1
    assert data["latency_incl_waiting_ms"]["p99"] >= 2000  # the waiting are no 1% minority
    assert "still waiting when the run was cut" in p.stdout, p.stdout
    assert "+ waiting" in p.stdout


def test_the_text_summary_shows_the_run_s_phases_or_says_they_were_not_measured() -> None:
    from rich.console import Console

    from lab.summary import RunSummary
    from text.summary import render_summary

    def rendered(s: RunSummary) -> str:
        console = Console(record=True, width=140)
        render_summary(console, s)
        return console.export_text()

    s = RunSummary(model="prefork", model_detail="prefork", level=PRESETS["burst"])
    s.queue_wait = synthetic.hist(1.0, 10).plus(synthetic.hist(4200.0, 200))
    s.server_wait, s.service = None, synthetic.hist(0.3, 210)
    out = rendered(s)
    assert "queue wait" in out and "p99 4.2 s" in out and "over 210 connections" in out
    assert re.search(r"in-server wait +unknown \(not measured\)", out)
    assert "service" in out and "p50 300 µs" in out
    blank = rendered(RunSummary(model="nginx", model_detail="nginx", level=PRESETS["burst"]))
    assert re.search(r"request phases +not measured for this server", blank)
