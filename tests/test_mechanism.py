"""The accept mechanism read from /proc (readers.mechanism), on real servers and on the
lab's own models, and every diagnosis's why and fix following what was read
(judging.explain), never the model's or server's name."""

from __future__ import annotations

import dataclasses
import json
import socket

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import synthetic
from conftest import wait_until
from export.prometheus import SnapshotCollector
from judging import diagnosis, explain, master
from judging.analyser import Analyser
from readers import accepts_bpf
from readers.mechanism import EPOLLEXCLUSIVE, ProcessWaits, classify, thread_acceptors
from realservers import real_server  # noqa: F401 - the fixture
from sources.sampler import Sampler
from text.attach import render
from values.snapshot import ListenerSample, Role, Snapshot
from values.spread import Spread, Wake

# -- classification from evidence (pure) ------------------------------------------------

L = 0x81F48  # a listening socket's inode


def _proc(pid, *, epolls=None, sockets=None, calls=None, threads=1) -> ProcessWaits:
    return ProcessWaits(
        pid, epolls or {}, {3: L} if sockets is None else sockets, calls or {}, threads
    )


def test_apache_prefork_blocked_in_accept_is_fifo_though_its_pollset_holds_the_listener() -> None:
    # seen: each child in accept4(3) (syscall 288 0x3), fd 3 also in an epoll set (events 19)
    kids = {p: _proc(p, epolls={6: {L: 0x19}}, calls={p: ("accept", 3)}) for p in (11, 12)}
    m = classify([(L, 80)], kids, worker_pids={11, 12})[L]
    assert (m.spread, m.wake, len(m.waiters)) == (Spread.SHARED, Wake.BLOCKING, 2)


def test_a_pollset_nobody_waits_in_is_no_evidence_while_its_process_sleeps_elsewhere() -> None:
    """`serverscope serve apache:prefork` starved by 40 idle keep-alive clients, attached:
    every child asleep in poll() on its client, none in accept; the listeners' panel said
    `epoll, all waiters woken` from the pollset each child builds and does not use (idle,
    the same children wait in accept4: `blocking accept (FIFO)`). Unknown until seen."""
    kids = {p: _proc(p, epolls={6: {L: 0x19}}, calls={p: ("other", None)}) for p in (11, 12)}
    m = classify([(L, 80)], kids, worker_pids={11, 12})[L]
    assert m.spread is None and m.wake is None
    # a running one says nothing either way: its set stands (an event loop at work)
    running = {p: _proc(p, epolls={6: {L: 0x19}}) for p in (11, 12)}
    assert classify([(L, 80)], running, worker_pids={11, 12})[L].wake == Wake.EPOLL


def test_exclusive_bit_plain_epoll_reuseport_and_a_dispatching_master() -> None:
    nginx = {p: _proc(p, epolls={7: {L: 0x10000019}}, calls={p: ("epoll", 7)}) for p in (21, 22)}
    assert classify([(L, 80)], nginx, worker_pids={21, 22})[L].wake == Wake.EXCLUSIVE
    node = {p: _proc(p, epolls={13: {L: 0x19}}, calls={p: ("epoll", 13)}) for p in (31, 32)}
    assert classify([(L, 80)], node, worker_pids={31, 32})[L].wake == Wake.EPOLL
    a, b = L, L + 1  # two sockets on one port, one per worker
    rp = {
        41: _proc(41, epolls={8: {a: 0x2019}}, sockets={5: a}, calls={41: ("epoll", 8)}),
        42: _proc(42, epolls={8: {b: 0x2019}}, sockets={5: b}, calls={42: ("epoll", 8)}),
    }
    got = classify([(a, 80), (b, 80)], rp, worker_pids={41, 42})
    assert {m.spread for m in got.values()} == {Spread.REUSEPORT}
    # Node's round robin: only the master (not a worker) polls the listener
    rr = {50: _proc(50, epolls={13: {L: 0x19}}, calls={50: ("epoll", 13)}), 51: _proc(51)}
    assert classify([(L, 80)], rr, worker_pids={51})[L].spread == Spread.MASTER
    # a busy worker says nothing: unknown, not a guess
    busy = {60: _proc(60, calls={})}
    assert classify([(L, 80)], busy, worker_pids={60})[L].spread is None


def test_a_worker_still_booting_holds_the_listener_and_counts_as_one_of_its_acceptors() -> None:
    """gunicorn sync, 2 workers, one still importing its app (asleep elsewhere, holding the
    socket): 'one acceptor · select' for the first 2.5 s of an attach (seen with an app
    that sleeps at import); the listener is shared by the two workers."""
    from values.spread import mechanism_label

    kids = {
        11: _proc(11, sockets={5: L}, calls={11: ("select", 9)}),
        12: _proc(12, sockets={5: L}, calls={12: ("other", None)}),
    }
    master = _proc(10, sockets={5: L}, calls={10: ("select", 4)})  # its pipe only
    m = classify([(L, 80)], {10: master, **kids}, worker_pids={11, 12})[L]
    assert (len(m.waiters), m.holders, m.acceptors()) == (1, 2, 2)
    assert mechanism_label(m.spread, m.wake, m.acceptors()) == "shared · select, all waiters woken"
    alone = classify([(L, 80)], {11: kids[11]}, worker_pids={11})[L]  # one worker: one acceptor
    assert mechanism_label(alone.spread, alone.wake, alone.acceptors()) == "one acceptor · select"


def test_threads_that_each_wait_on_the_listener_are_the_workers() -> None:
    # HAProxy nbthread 2, seen: one epoll set per thread, each holding the listener
    hap = {
        70: _proc(
            70,
            epolls={3: {L: 0x2019}, 9: {L: 0x2019}},
            calls={70: ("epoll", 3), 76: ("epoll", 9)},
            threads=2,
        )
    }
    mechs = classify([(L, 80)], hap, worker_pids={70})
    assert mechs[L].spread == Spread.SHARED and len(mechs[L].waiters) == 2
    assert thread_acceptors(mechs, hap) == {70: frozenset({70, 76})}
    # Apache event: one listener thread per process waits; its threads are not workers
    ev = {
        p: _proc(p, epolls={6: {L: 0x19}}, calls={p + 8: ("epoll", 6)}, threads=6) for p in (80, 90)
    }
    mechs = classify([(L, 80)], ev, worker_pids={80, 90})
    assert mechs[L].spread == Spread.ACCEPTOR_THREAD and thread_acceptors(mechs, ev) == {}
    assert EPOLLEXCLUSIVE == 0x10000000


# -- the words follow what was read -------------------------------------------------------


def _skewed(server: str | None, spread: str | None, wake: str | None) -> list[Snapshot]:
    snaps = synthetic.series(
        24, workers=4, accepts=[26, 1, 2, 0], connections=[13, 1, 2, 0], spread=spread, wake=wake
    )
    return [
        dataclasses.replace(s, model=dataclasses.replace(s.model, server=server)) if s.model else s
        for s in snaps
    ]


@pytest.mark.parametrize(
    ("server", "wake", "said", "not_said"),
    [
        # Node many_accepts: registered without EPOLLEXCLUSIVE (events: 19)
        ("node-cluster-none", "epoll", "every waiter is woken and they race", "LIFO"),
        ("nginx", "exclusive", "LIFO", "every waiter"),
        (None, "exclusive", "LIFO", "every waiter"),  # the lab's many_accepts --exclusive
        (None, "blocking", "FIFO", "LIFO"),
        ("nginx", None, "", "LIFO"),  # nothing read: no claim
    ],
)
def test_the_skew_banner_says_the_mechanism_read(server, wake, said, not_said) -> None:
    win = _skewed(server, "shared" if wake else None, wake)
    d = diagnosis.accept_skew(win)
    assert d is not None, "the scenario is skewed"
    assert said in d.message and not_said not in d.message, d.message
    if server == "nginx" and wake == "exclusive":
        assert "`listen ... reuseport`" in d.message  # the server's own knob


def test_reuseport_backlog_and_master_bottleneck_explain_what_was_read() -> None:
    win = synthetic.series(
        24, workers=4, listeners=4, queue=[0, 37, 0, 0], spread="reuseport", wake="epoll"
    )
    d = diagnosis.reuseport_backlog(win)
    assert d is not None and "hashing new connections to" in d.message, d
    # a master read to dispatch (no model named "cluster", no dispatch counts): still named
    win = synthetic.series(
        24, model="attached", workers=4, cpu=[10] * 4, master_cpu=97.0, spread="master"
    )
    d = master.master_bottleneck(win)
    assert d is not None and "one process accepts every connection" in d.message, d


def test_the_mechanism_goes_to_json_prometheus_and_the_attach_table() -> None:
    snap = synthetic.snapshot(workers=4, spread="shared", wake="exclusive")
    back = Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert back.listeners[0].wake == Wake.EXCLUSIVE and back.listeners[0].waiters == 4
    old = snap.to_dict()  # a recording made before: no such keys
    for ln in old["listeners"]:
        for k in ("spread", "wake", "waiters"):
            del ln[k]
    assert Snapshot.from_dict(old).listeners[0].mechanism == "unknown"
    collector = SnapshotCollector()
    collector.update(snap)
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    labels = 'address="127.0.0.1",listener="0",port="8080",spread="shared",wake="exclusive"'
    assert f"serverscope_listener_mechanism{{{labels}}} 1.0" in text
    assert 'serverscope_listener_waiters{address="127.0.0.1",listener="0",port="8080"} 4.0' in text
    from rich.console import Console

    con = Console(width=200, record=True)
    con.print(render(snap))
    assert "shared · EPOLLEXCLUSIVE (LIFO)" in con.export_text()


# -- real servers ----------------------------------------------------------------------------


def _read(sampler: Sampler) -> Snapshot:
    """The first snapshot with every listener's mechanism read."""
    snaps: list[Snapshot] = []

    def ready() -> bool:
        snaps.append(sampler.sample())
        return all(ln.spread is not None for ln in snaps[-1].listeners)

    wait_until(ready, 10, "the mechanism read")
    return snaps[-1]


@pytest.mark.parametrize(
    ("kind", "kw", "label"),
    [
        ("node", {"sched": "none"}, "shared · epoll, all waiters woken"),
        ("node", {"sched": "rr"}, "master dispatch · one process accepts, hands on"),
        ("nginx", {}, "shared · EPOLLEXCLUSIVE (LIFO)"),
        ("nginx", {"reuseport": True}, "reuseport · by hash"),
        ("apache", {"mpm": "prefork"}, "shared · blocking accept (FIFO)"),
        ("apache", {"mpm": "event"}, "listener thread per process · epoll, all waiters woken"),
        ("gunicorn", {"worker_class": "sync"}, "shared · select, all waiters woken"),
    ],
)
def test_the_mechanism_read_on_real_servers(real_server, kind, kw, label) -> None:  # noqa: F811
    srv = real_server(kind, **kw)
    sampler = Sampler.attach(pid=srv.root)
    try:
        snap = _read(sampler)
    finally:
        sampler.close()
    assert {ln.mechanism for ln in snap.listeners} == {label}
    if kind == "node" and kw["sched"] == "none":  # the node:many_accepts finding
        why = explain.skew(snap)
        assert "LIFO" not in why and "every waiter is woken" in why, why
        assert all(ln.waiters == 2 for ln in snap.listeners)


@pytest.mark.parametrize(
    ("model", "knobs", "label"),
    [
        ("many_accepts", {"workers": 2}, "shared · epoll, all waiters woken"),
        ("many_accepts", {"workers": 2, "exclusive": True}, "shared · EPOLLEXCLUSIVE (LIFO)"),
        ("proc_spawn", {"workers": 4}, "shared · blocking accept (FIFO)"),
        ("reuseport", {"workers": 2}, "reuseport · by hash"),
        ("reuseport", {"workers": 2, "steer": "cbpf-cpu"}, "reuseport · by cbpf-cpu"),
        ("cluster", {"workers": 2}, "master dispatch · one process accepts, hands on"),
    ],
)
def test_the_mechanism_read_on_the_labs_models(start_server, model, knobs, label) -> None:
    sup = start_server(model, **knobs)
    sampler = Sampler.for_supervisor(sup)
    try:
        snap = _read(sampler)
    finally:
        sampler.close()
    assert {ln.mechanism for ln in snap.listeners} == {label}


BPF = accepts_bpf.unavailable()


def test_haproxy_threads_are_the_workers_and_imbalance_is_judged_across_them(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("haproxy", threads=2)
    sampler = Sampler.attach(pid=srv.root, exact_accepts=BPF is None)
    analyser = Analyser()
    try:
        snap = analyser.annotate(_read(sampler))
        rows = [w for w in snap.workers if w.pid == srv.root]
        assert [w.role for w in rows if not w.is_thread] == [Role.PROCESS]
        threads = [w for w in snap.live_workers if w.is_thread]
        assert len(threads) == 2 and len(snap.live_workers) == 2
        for _ in range(200):  # sequential connections, as when the finding was seen
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as c:
                c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                while c.recv(4096):
                    pass
        if BPF is None:  # bpftrace's counts of every accept made so far are read
            sampler.source.reader.counter.sync()  # type: ignore[attr-defined]
        metric = "accepts" if BPF is None else "cpu"
        snaps = []

        def judged() -> bool:
            snaps.append(analyser.annotate(sampler.sample()))
            imb = getattr(snaps[-1].imbalance, metric)
            return imb is not None and imb.n == 2 and imb.jain is not None

        wait_until(judged, 10, f"{metric} judged across the 2 threads")
        last = snaps[-1]
        if BPF is None:  # exact per thread: they add up to the process's, and to 200
            per = [w.accepts_total or 0 for w in last.live_workers]
            proc = next(w for w in last.workers if w.role == Role.PROCESS)
            assert sum(per) == proc.accepts_total and sum(per) >= 200, (per, proc.accepts_total)
            assert last.totals()["accepts_total"] == proc.accepts_total  # not counted twice
            snaps += [sampler.sample() for _ in range(2)]  # idle intervals
            for s in snaps:  # each interval too (the old: 99 a sample, idle, forever)
                p = next(w for w in s.workers if w.role == Role.PROCESS)
                assert p.accepts == sum(w.accepts or 0 for w in s.live_workers), s.workers
    finally:
        sampler.close()


def test_listener_sample_keeps_unknown_as_unknown() -> None:
    ln = ListenerSample(index=0, port=1, address="::", queue=0, limit=1)
    assert ln.mechanism == "unknown" and ln.waiters is None
