"""A stalled reuseport worker and its remedy, without a server: the fault `fix --fault`
takes (lab.scenarios.Fault), the remedy it leads to (lab.fix), the verdict's figure for
the requests a stall strands (judging.figures "in_flight"), a fix whose run did not do
the fault, and the worker watchdog (servers.watchdog). The real runs are
tests/test_fix.py's (shared-queue) and tests/test_migrate.py's (the watchdog)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import synthetic
from judging import verdict, windows
from lab import fix
from lab.scenarios import MASTER, Fault
from loadgen.levels import LoadLevel
from servers import migrate
from servers.config import ServerConfig
from servers.watchdog import Watchdog

STALLED = (
    "stalled_owner",
    "stalled worker: worker 0 is stopped (/proc state T) with 78 connections in its own "
    "reuseport queue on port 40000, the oldest waiting >= 1 s; the other 3 hold none",
)


def test_a_fault_reads_as_fix_takes_it_and_refuses_in_one_line() -> None:
    assert Fault.parse("pause:0@3") == Fault("pause", slot=0, after_s=3.0)
    assert Fault.parse("kill:2") == Fault("kill", slot=2, after_s=2.0)
    assert Fault.parse("burn:master@1.5") == Fault("burn", slot=MASTER, after_s=1.5)
    stutter = Fault.parse("pause:1@2+0.5")
    assert stutter == Fault("pause", slot=1, after_s=2.0, for_s=0.5)
    assert stutter.describe() == "pause (SIGSTOP) worker 1 after 2 s for 0.5 s"
    assert stutter.then() == Fault("resume", slot=1, after_s=2.5)
    assert Fault.parse("pause:0@3").then() is None  # paused to the end
    for bad, why in [
        ("sleep:0@3", "the action is one of pause, kill, burn"),
        ("pause:x@3", "want ACTION[:SLOT][@SECONDS][+FOR]"),
        ("pause:0@-1", "0 <= seconds"),
        ("kill:0@1+2", "+FOR is a pause's length"),
        ("pause:0@1+0", "+FOR is a pause's length"),
    ]:
        with pytest.raises(ValueError, match=r"^fault ") as e:
            Fault.parse(bad)
        assert why in str(e.value) and "\n" not in str(e.value)


def test_a_stalled_reuseport_worker_gets_the_shared_queue_with_as_many_workers() -> None:
    cfg = ServerConfig(model="reuseport", workers=4)
    remedy, message, rule = fix.choose(cfg, [("server_wait", "in-server wait"), STALLED])
    assert (remedy.name, rule, message) == ("shared-queue", "stalled_owner", STALLED[1])
    after = remedy.change(cfg)
    assert (after.model, after.workers, after.exclusive) == ("many_accepts", 4, False)
    assert remedy.watch[0] == "in_flight"  # the headline leads with the stranded requests
    with pytest.raises(fix.NothingToFix):  # a shared queue has no stalled-owner remedy
        fix.choose(ServerConfig(model="many_accepts"), [STALLED])


BACKLOG = (
    "reuseport_backlog",
    "one reuseport queue backed up: worker 0 queue 14, others <= 2 (median 0)",
)


def test_a_queue_backed_up_behind_a_busy_worker_gets_the_stalled_workers_remedies() -> None:
    """A worker busy in a handler (`--fault burn`) is not stopped: only reuseport_backlog
    is seen, and fix said "nothing to fix" where the shared queue cures it as well."""
    cfg = ServerConfig(model="reuseport", workers=4)
    remedy, message, rule = fix.choose(cfg, [("server_wait", "in-server wait"), BACKLOG])
    assert (remedy.name, rule, message) == ("shared-queue", "reuseport_backlog", BACKLOG[1])
    assert [r.name for r in fix.remedies_for(cfg, "reuseport_backlog")] == [
        r.name for r in fix.remedies_for(cfg, "stalled_owner")
    ]
    assert fix.choose(cfg, [BACKLOG], "watchdog")[0].change(cfg).worker_timeout == 1.0


def _stranding(seed: int, grow: bool) -> windows.Recording:
    """A run whose requests in flight climb by 12 a sample from the 8th on (a stalled
    worker's share stranded) or stay at a few."""
    snaps = synthetic.noisy(40, seed=seed)
    out = []
    for k, s in enumerate(snaps):
        stuck = 12 * max(0, k - 8) if grow else 0
        assert s.client is not None
        client = dataclasses.replace(s.client, in_flight=2 + k % 3 + stuck)
        out.append(dataclasses.replace(s, client=client))
    return windows.read(out, f"seed{seed}")


def test_the_verdict_counts_the_requests_a_stall_strands() -> None:
    """They never complete, so no latency shows them: the in-flight mean does."""
    v = verdict.judge(_stranding(1, grow=True), _stranding(2, grow=False))
    row = v.row("in_flight")
    assert row is not None and row.significant and row.direction == "better", row
    assert row.p_holm is not None and row.p_holm < 0.001
    assert row.before is not None and row.after is not None and row.before > 100 > 4 > row.after
    same = verdict.judge(_stranding(3, grow=False), _stranding(4, grow=False))
    assert not same.differences, same.headline()


def test_a_fix_whose_run_missed_the_fault_gives_no_verdict(tmp_path: object) -> None:
    """The same fault in both runs is the point: a run that did not do it ends the fix."""
    done = ["pause worker 0 (pid 10) at 1.50 s"]
    missed = ["no worker in slot 0 at 1.50 s"]
    faults = iter([done, missed])

    def run(cfg: ServerConfig, record: str, title: str) -> SimpleNamespace:
        said = next(faults)
        return SimpleNamespace(
            ok=True,
            interrupted=False,
            faults=said,
            result=None,
            rules_seen=lambda: [],
            to_json_dict=lambda: {"faults": said},
        )

    out = fix.run_fix(
        ServerConfig(model="reuseport", workers=2),
        LoadLevel(duration=4),
        ("a.jsonl", "b.jsonl"),
        run,  # type: ignore[arg-type]
        seen=[STALLED],
        fault=Fault("pause", after_s=1.5),
        judge=lambda a, b: pytest.fail("judged without the fault"),  # type: ignore[arg-type,return-value]
    )
    assert out.verdict is None and out.after is not None
    assert out.problems == [
        "the after run did not pause (SIGSTOP) worker 0 after 1.5 s "
        "(no worker in slot 0 at 1.50 s): not the same fault"
    ]
    report = out.to_json_dict()
    assert report["fault"] == "pause (SIGSTOP) worker 0 after 1.5 s"
    assert report["before_run"]["faults"] == done and report["verdict"] is None


def test_the_watchdog_kills_the_worker_whose_loop_went_silent_and_only_it() -> None:
    """servers.watchdog on two processes (sleep): slot 0's beat comes from a running event
    loop, slot 1's stopped; only slot 1's process is killed, once per silence."""
    dog = Watchdog(0.4, 2)
    procs = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        dog.beat(0)
        dog.beat(1)
        loop = asyncio.new_event_loop()
        try:
            dog.on_loop(0)(loop)
            loop.run_until_complete(asyncio.sleep(0.6))  # slot 0 beats every 0.1 s
        finally:
            loop.close()
        pids = {0: procs[0].pid, 1: procs[1].pid}
        assert dog.check(pids) == [procs[1].pid]
        assert procs[1].wait(timeout=10) == -signal.SIGKILL
        assert procs[0].poll() is None  # beating: left alone
        assert dog.check(pids) == []  # its slot beats anew: the new worker's grace
        assert dog.killed == [procs[1].pid] and dog.tick == pytest.approx(0.1)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_the_watchdog_remedies_and_migrate_s_refusal_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = ServerConfig(model="reuseport", workers=3)
    dog = fix.choose(cfg, [STALLED], "watchdog")[0].change(cfg)
    assert (dog.model, dog.workers, dog.worker_timeout, dog.migrate) == ("reuseport", 3, 1.0, False)
    both = fix.choose(cfg, [STALLED], "migrate+watchdog")[0].change(cfg)
    assert (both.worker_timeout, both.migrate) == (1.0, True)
    with pytest.raises(fix.NothingToFix):  # a watchdog there already
        fix.choose(dog, [STALLED], "watchdog")
    sysctl = tmp_path / "tcp_migrate_req"
    sysctl.write_text("0\n")
    monkeypatch.setattr(migrate, "SYSCTL", str(sysctl))
    monkeypatch.setattr(migrate.unavailable, "__defaults__", (str(sysctl),))
    out = fix.run_fix(
        cfg,
        LoadLevel(duration=4),
        ("a.jsonl", "b.jsonl"),
        lambda *a: pytest.fail("a run started"),  # type: ignore[arg-type,return-value]
        remedy="migrate+watchdog",
        fault=Fault("pause", after_s=1.0),
    )
    (problem,) = out.problems
    assert problem.startswith("could not start: --migrate needs net.ipv4.tcp_migrate_req = 1")
    assert "\n" not in problem and out.before is None


def test_f_in_the_lab_pauses_in_both_runs_the_worker_paused_on_screen() -> None:
    """The lab's `f` (tui.screens.live) hands FixScreen this fault: the worker the user
    stopped with `p`, by its slot (the runs' pids differ), PAUSE_AT_S into each run."""
    snap = synthetic.snapshot()
    w = snap.workers[1]
    assert w.slot is not None
    assert fix.paused_fault(snap, {w.pid}) == Fault("pause", slot=w.slot, after_s=1.0)
    assert fix.paused_fault(snap, set()) is None
    assert fix.paused_fault(None, {w.pid}) is None
