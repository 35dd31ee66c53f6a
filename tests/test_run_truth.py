"""What a run's summary, `compare` and the load generator's own warning say (issue 22): the
whole-run figures cover the load, what follows it is labelled teardown; a compare row's
figures agree with each other; a warning judged on one moment does not stay up."""

from __future__ import annotations

import dataclasses

import pytest

import synthetic
from lab.aggregate import SummaryBuilder
from loadgen.levels import PRESETS
from values.findings import Diagnosis
from values.snapshot import Snapshot


def _at(t: float, totals: list[int], accepts: list[int], **client: object) -> Snapshot:
    s = synthetic.snapshot(time=1000.0 + t, workers=4, accepts=accepts, accepts_total=totals)
    if client:
        c = synthetic.load_stats(time=1000.0 + t)
        s = dataclasses.replace(s, client=dataclasses.replace(c, **client))
    return s


def test_the_queue_draining_after_the_load_is_teardown_not_a_finding() -> None:
    """prefork --max-workers 32 under keepalive-idle for 12 s reported "accept skew: worker
    28 took 51%" at 14.2 s (the queue draining after the load), and the whole-run Jain
    counted those accepts."""
    level = PRESETS["keepalive-idle"].with_(duration=12)
    b = SummaryBuilder("prefork", "prefork (max-workers=4)", level)
    b.start_clock(1000.0)
    b.add(_at(0.0, [0, 0, 0, 0], [0, 0, 0, 0]))  # baseline, before the load
    for k in range(1, 49):  # 12 s of load, even: 10 accepts a worker each second
        t = 0.25 * k
        b.add(_at(t, [int(10 * t)] * 4, [2, 3, 2, 3], running=True, elapsed=t))
    skew = Diagnosis("accept_skew", "warning", "accept skew: worker 2 took 51% of accepts")
    for k in range(1, 9):  # the drain, then the queue emptying to worker 2
        t = 12.0 + 0.25 * k
        snap = _at(t, [120, 120, 120 + 30 * k, 120], [0, 0, 30, 0], running=k < 4,
                   draining=k < 4, elapsed=min(t, 12.5))  # fmt: skip
        b.add(dataclasses.replace(snap, diagnoses=(skew,)))
    s = b.finish(None, duration_s=12.0)
    assert [w.accepts for w in s.workers] == [120, 120, 120, 120]
    assert s.accept_jain == 1.0
    assert s.rules_seen() == []
    assert s.teardown_accepts == 240
    assert [(d.rule, d.first_s) for d in s.teardown_diagnoses] == [("accept_skew", 12.25)]
    d = s.to_json_dict()
    assert d["diagnoses"] == [] and d["teardown"]["accepts"] == 240
    assert d["teardown"]["diagnoses"][0]["message"].startswith("accept skew: worker 2")
    phases = [row["phase"] for row in s.series]
    assert phases.count("teardown") == 8 and phases[:48] == ["load"] * 48


# -- the load generator's own warning ----------------------------------------------------------


def test_a_generator_warning_judged_on_one_moment_does_not_stay_on_the_last_frame(
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    """`--load steady` for 5 minutes: 60,000 requests in 300 s, all sent on time, yet the
    final screen said "load generator is the bottleneck: sends 95% of its 200 req/s" (one
    second's reading, the last one flagged)."""
    from loadgen import driver as drv
    from loadgen.levels import LoadLevel
    from loadgen.selfwatch import Figures, SelfReading

    clock = [1000.0]
    monkeypatch.setattr(drv, "_monotonic", lambda: clock[0])
    d = drv.Driver(None, LoadLevel(clients=20, rate=200, duration=300), "fast", lambda *a: None)  # type: ignore[arg-type]
    d.t0 = d.rec.t0 = 1000.0
    on_time, one_slow_second = Figures(0.3, 0.35, 0.0, True), Figures(0.3, 0.35, 0.051, True)
    shown = []
    for k in range(1, 1501):  # 300 s of readings, 5 a second
        clock[0] = 1000.0 + 0.2 * k
        d.rec.sent = d.due = 40 * k  # every request sent when due
        d.watch.add(SelfReading(clock[0], 0.06 * k, 0.06 * k, 0.01 * k, d.rec.sent, 5))
        fig = one_slow_second if 700 <= k < 705 else on_time
        monkeypatch.setattr(d.watch, "figures", lambda rate, f=fig: f)
        shown.append(d.snapshot().bottleneck)
    assert shown[699:705] == [""] * 6  # one second's 95%: not sustained, not raised
    d.stopping = True  # the drain, then the end: the run's own verdict
    assert d.snapshot().bottleneck == ""
    final = d.snapshot(running=False)
    assert final.bottleneck == ""
    assert final.bottleneck_share == pytest.approx(5 / 1500)  # the readings behind, shown or not


def test_a_sustained_generator_warning_is_raised_and_cleared_with_its_evidence() -> None:
    from loadgen.selfwatch import SUSTAIN_S, Sustained

    w = Sustained()
    lag = "load generator is the bottleneck: sends 80% of its 200 req/s with connections free"
    readings = int(SUSTAIN_S / 0.2)
    assert [w.update(100.0 + 0.2 * k, lag) for k in range(readings)] == [""] * readings
    assert w.update(100.0 + SUSTAIN_S, lag) == lag
    assert w.update(100.0 + SUSTAIN_S + 0.2, "") == ""  # the evidence gone: cleared
    assert w.update(100.0 + SUSTAIN_S + 0.4, lag) == ""  # and needs its time again


# -- compare: a row's figures agree with each other --------------------------------------------


def _row(s) -> str:  # type: ignore[no-untyped-def]
    from rich.console import Console

    from text.compare import table

    console = Console(record=True, width=220)
    console.print(table([s]))
    out = console.export_text()
    return next(line for line in out.splitlines() if s.model_detail in line)


def _summary(model: str, accepts: list[int], **kw: object):  # type: ignore[no-untyped-def]
    from judging import analysis
    from lab.summary import DiagnosisSeen, RunSummary, WorkerTotals

    s = RunSummary(model=model, model_detail=model, level=PRESETS["burst"], samples=80)
    s.workers = [
        WorkerTotals(f"worker {i}", i, 100 + i, 100 + i, "process", 1, accepts=a)
        for i, a in enumerate(accepts)
    ]
    imb = analysis.measure("accepts", {(i,): (f"w{i}", float(a)) for i, a in enumerate(accepts)}, 1)
    s.accept_jain, s.accept_top_share, s.accept_n = imb.jain, imb.top_share, imb.n
    s.cpu_jain = 1.0
    for k, v in kw.items():
        setattr(s, k, v)
    s.diagnoses = [DiagnosisSeen("accept_skew", "warning", "accept skew: ...", 3.2, 9)]
    return s


def test_a_compare_row_says_what_its_imbalance_is_over_and_when_a_diagnosis_was_seen() -> None:
    # go:server, one process: "Jain 1.00" beside "top 100%" (both true of one worker)
    one = _row(_summary("go:server", [5000], overflows=10, own_drops=0))
    assert "1.00" not in one and "100%" not in one and "1 worker" in one, one
    # reuseport: even over the run, skew named in 9 of 80 samples at 3 s: said so
    row = _row(_summary("reuseport", [260, 250, 245, 245], overflows=10, own_drops=0))
    assert "26% of 4" in row and "accept_skew (3 s, 9/80)" in row, row
    # ListenOverflows moved by other jobs (namespace-wide) are not the model's: its own
    # listening sockets dropped none
    assert " 10 " not in row and " 0 " in row, row


def test_the_run_counts_the_drops_of_its_own_listening_sockets() -> None:
    from values.snapshot import ListenerSample

    b = SummaryBuilder("single", "single", PRESETS["burst"])

    def snap(t: float, drops: int | None, overflows: int) -> Snapshot:
        s = synthetic.snapshot(time=1000.0 + t, workers=1, overflows_delta=overflows)
        ln: ListenerSample = dataclasses.replace(s.listeners[0], drops=drops)
        return dataclasses.replace(s, listeners=(ln,))

    b.add(snap(0.0, 7, 0))  # 7 before the run: not the run's
    b.add(snap(0.25, 9, 30))  # the namespace moved 30 (other sockets too)
    b.add(snap(0.5, 12, 30))
    s = b.finish(None, duration_s=0.5)
    assert (s.own_drops, s.overflows) == (5, 60)
    assert s.to_json_dict()["own_listen_drops"] == 5
    b = SummaryBuilder("nginx", "nginx", PRESETS["burst"])
    b.add(snap(0.0, None, 0))
    b.add(snap(0.25, None, 30))
    assert b.finish(None, duration_s=0.25).own_drops is None  # not read: unknown, not 0


def test_a_listening_socket_s_own_drops_read_the_same_by_getsockopt_and_sock_diag() -> None:
    """A backlog of 1 and 6 connects at once: the handshakes that find the queue full are
    dropped by this socket (its sk_drops); the namespace's ListenDrops moved at least as
    much (other sockets add to it too)."""
    import socket

    from conftest import wait_until
    from plumbing.tcpinfo import listen_drops
    from readers import procfs
    from readers.sockdiag import SockDiag

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        before = procfs.netstat_counters()[1]
        clients = []
        try:
            for _ in range(6):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                clients.append(c)
            wait_until(lambda: (listen_drops(srv) or 0) > 0, 5, "a drop at the listener")
            with SockDiag() as diag:
                [seen] = diag.listeners([port])
            mine = listen_drops(srv)
            assert mine is not None and seen.drops is not None
            assert abs(seen.drops - mine) <= 2  # (a retransmitted SYN may land between)
            assert procfs.netstat_counters()[1] - before >= mine
        finally:
            for c in clients:
                c.close()
