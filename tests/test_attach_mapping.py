"""The attach source's judgements, without a server: states from outside, server kinds
from command lines, and the fix a diagnosis names only for a known real server."""

from __future__ import annotations

import dataclasses

import pytest

from judging import diagnosis
from plumbing.loghist import LogHist
from readers import realkind
from readers.realtree import TaskSample
from sources import attach_states
from sources.attach_source import _state
from values.blocked import Blocked
from values.phases import Phases
from values.server_info import HostSample, ModelInfo
from values.snapshot import Hold, Kind, ListenerSample, Role, Snapshot, WorkerSample, WorkerState


@pytest.mark.parametrize(
    ("letter", "conns", "threads", "state"),
    [
        ("T", 1, 1, WorkerState.STOPPED),  # SIGSTOPped: stands out whatever it holds
        ("t", 0, 4, WorkerState.STOPPED),
        ("Z", 0, 1, WorkerState.DEAD),
        ("S", 1, 1, WorkerState.READING),  # blocked on the one connection it holds
        ("R", 1, 1, WorkerState.WORKING),
        ("S", 0, 1, WorkerState.WAITING),
        ("S", 3, 8, WorkerState.UNKNOWN),  # threads: which one holds what is not shown
        ("S", 0, 8, WorkerState.WAITING),
        ("S", None, 1, WorkerState.UNKNOWN),  # its sockets are not ours to read: not 0
        ("R", None, 1, WorkerState.WORKING),  # running says so whatever it holds
        ("S", 3, 1, WorkerState.UNKNOWN),  # an event loop whose connections differ
    ],
)
def test_a_process_state_is_judged_from_proc_and_its_connections(
    letter: str, conns: int | None, threads: int, state: WorkerState
) -> None:
    assert _state(letter, conns, threads) == state


@pytest.mark.parametrize(
    ("conns", "hold", "state"),
    [
        (1, Hold.KEEPALIVE, WorkerState.KEEPALIVE),  # a response went out, nothing since
        (1, Hold.PARTIAL, WorkerState.READING),
        (1, Hold.SILENT, WorkerState.READING),
        (9, Hold.KEEPALIVE, WorkerState.KEEPALIVE),  # nginx: 9 idle keep-alive connections
        (9, Hold.PARTIAL, WorkerState.READING),
    ],
)
def test_what_its_connections_did_names_a_sleeping_process_state(
    conns: int, hold: Hold, state: WorkerState
) -> None:
    assert _state("S", conns, 1, hold) == state


@pytest.mark.parametrize(
    ("blocked", "state"),
    [
        (Blocked("clock_nanosleep"), WorkerState.WORKING),  # a handler's time.sleep
        (Blocked("futex"), WorkerState.WORKING),  # a lock, a condition
        (Blocked("read", fd=9, socket=False), WorkerState.WORKING),  # a file, a pipe
        (Blocked("recvfrom", fd=9, socket=True), WorkerState.READING),  # its client
        (Blocked("poll", nfds=1), WorkerState.READING),  # Apache's read of its client
        (Blocked("read", fd=9), WorkerState.READING),  # fd not told: as before
        (None, WorkerState.READING),
    ],
)
def test_a_sleeping_process_with_one_connection_reads_it_only_where_its_call_says_so(
    blocked: Blocked | None, state: WorkerState
) -> None:
    """gunicorn sync in its handler's time.sleep (ss: its one connection, request read,
    nothing sent) was drawn `R reading` and 'stuck reading ... (in clock_nanosleep)': the
    call it was read in is not a read of its client; it is in the request, working."""
    assert attach_states.busy_in(WorkerState.READING, blocked) == state
    assert attach_states.busy_in(WorkerState.KEEPALIVE, blocked) == WorkerState.KEEPALIVE


def test_a_threaded_childs_glyphs_go_to_its_worker_threads_in_the_order_they_were_made() -> None:
    """Main thread (tid = pid) first, then worker threads 0..N-1, then the listener."""
    pid = 500
    threads = [TaskSample(pid, tid, "apache2", "S", 0, 0.0, 1) for tid in (500, 503, 501, 502, 504)]
    w, r, _ = WorkerState.WRITING, WorkerState.READING, WorkerState.WAITING
    assert attach_states.per_thread(pid, threads, (w, _, r)) == {501: w, 502: _, 503: r}
    assert attach_states.per_thread(pid, threads[:2], (w, _, r)) == {}  # not its layout
    assert attach_states.of_slot((_, r, _, w)) == w  # the busiest thread names the child
    assert attach_states.of_slot((_, _)) == _


@pytest.mark.parametrize(
    ("cmd", "kw", "kind"),
    [
        (["/usr/sbin/apache2", "-f", "x.conf"], {}, "apache-prefork"),
        (["/usr/sbin/apache2"], {"threaded_children": True}, "apache-threaded"),
        (["nginx: master process nginx", "-c", "c"], {"listeners_per_port": 2}, "nginx-reuseport"),
        (["node", "cluster.js"], {"children": 2}, "node-cluster-rr"),
        (["node", "c.js"], {"children": 2, "workers_hold_listener": True}, "node-cluster-none"),
        (["python", "-m", "gunicorn", "-w", "2", "app:app"], {}, "gunicorn-sync"),
        (["python", "-m", "gunicorn", "-k", "gthread", "app:app"], {}, "gunicorn-gthread"),
        (["python", "-m", "gunicorn", "--threads", "4", "app:app"], {}, "gunicorn-gthread"),
        (["python", "-m", "uvicorn", "--workers", "2", "a:app"], {}, "uvicorn"),
        (["/usr/bin/redis-server"], {}, None),
        # nginx's argv rewritten to one string that ends in the -p dir: its exe says nginx
        (
            ["nginx: master process /usr/sbin/nginx -c /srv/site/nginx.conf -p /srv/site"],
            {"exe": "nginx"},
            "nginx",
        ),
        (["nginx: master process nginx -p /srv/site"], {}, "nginx"),  # argv only: 1st word
        (["/srv/site/bin/run"], {"exe": "apache2"}, "apache-prefork"),  # any argv
        (
            ["/usr/bin/python3", "/srv/venv/bin/gunicorn", "app:app"],
            {"exe": "python3.11", "name": "gunicorn"},
            "gunicorn-sync",
        ),
        (["node", "server.js"], {"exe": "node", "children": 0}, "node"),
        (["python3", "-m", "http.server"], {"exe": "python3.11"}, "python-http.server"),
        (["/usr/bin/myserver", "--name", "uvicorn"], {"exe": "myserver"}, "uvicorn"),
    ],
)
def test_the_server_kind_is_read_from_its_command_line_and_shape(
    cmd: list[str], kw: dict, kind: str | None
) -> None:
    shape = {
        "children": 2,
        "threaded_children": False,
        "workers_hold_listener": False,
        "listeners_per_port": 1,
        **kw,
    }
    assert realkind.detect(cmd, **shape) == kind


def test_the_programs_name_is_its_executable_else_its_comm_else_argvs_first_word() -> None:
    nginx = ["nginx: master process /usr/sbin/nginx -c /srv/site/nginx.conf -p /srv/site"]
    assert realkind.program("nginx", "nginx", nginx) == "nginx"
    assert realkind.program(None, None, nginx) == "nginx"
    assert realkind.program(None, "apache2", ["/usr/sbin/apache2"]) == "apache2"
    assert realkind.program(None, None, []) is None


def _starving(
    server: str | None,
    t: float,
    *,
    hold: Hold | None = None,
    state: WorkerState = WorkerState.READING,
    source: str = "attach",
    phases: bool = False,
) -> Snapshot:
    workers = tuple(
        WorkerSample(
            slot=None,
            pid=100 + i,
            tid=100 + i,
            generation=1,
            kind=Kind.PROCESS,
            state=state,
            cpu_percent=0.0,
            connections=1,
            hold=hold,
        )
        for i in range(4)
    )
    thread = dataclasses.replace(
        workers[0], kind=Kind.THREAD, tid=999, role=Role.HELPER, cpu_percent=50.0, accepts=3
    )
    wait = LogHist()  # queue wait measured, none accepted in the window
    return Snapshot(
        seq=int(t * 4),
        time=t,
        wall_time=t,
        interval_s=0.25,
        source=source,
        window_phases=Phases(queue=wait) if phases else None,
        model=ModelInfo(name="attached", root_pid=1, server=server),
        workers=(*workers, thread),
        listeners=(ListenerSample(index=0, port=80, address="127.0.0.1", queue=3, limit=8),),
        host=HostSample(cpu_count=2, cpu_percent=1.0),
    )


@pytest.mark.parametrize(
    ("server", "fix"),
    [
        ("apache-prefork", "KeepAliveTimeout"),
        ("gunicorn-sync", "gthread"),
        (None, "shorten the keep-alive timeout"),  # the lab's own models: general words
    ],
)
def test_starvation_words_its_fix_in_a_known_servers_knobs(server: str | None, fix: str) -> None:
    win = [_starving(server, 1 + i * 0.25) for i in range(8)]
    d = diagnosis.starvation(win)
    assert d is not None and d.message.startswith("starvation: 4/4 workers busy")
    assert "each worker serves one connection to its end" in d.message
    assert fix in d.message


@pytest.mark.parametrize(
    ("server", "hold", "words", "fix", "not_said"),
    [
        ("apache-prefork", Hold.KEEPALIVE, "hold idle keep-alive", "KeepAliveTimeout", "half"),
        ("apache-prefork", Hold.PARTIAL, "stopped half-way", "RequestReadTimeout", "keep-alive"),
        ("gunicorn-sync", Hold.PARTIAL, "stopped half-way", "--timeout", "keep-alive"),
        ("gunicorn-sync", Hold.SILENT, "silent since they opened", "buffers whole", "keep-alive"),
        ("nginx", Hold.SILENT, "silent since they opened", "read timeout", "keep-alive"),
        (None, Hold.PARTIAL, "stopped half-way", "", "keep-alive"),  # the lab's: no fix
    ],
)
def test_starvation_says_what_holds_the_workers_and_the_fix_that_follows(
    server: str | None, hold: Hold, words: str, fix: str, not_said: str
) -> None:
    """Attached, each worker's socket says what pins it (tcp_info); the line follows."""
    win = [_starving(server, 1 + i * 0.25, hold=hold) for i in range(8)]
    d = diagnosis.starvation(win)
    assert d is not None and d.message.startswith("starvation: 4/4 workers busy: they ")
    assert words in d.message and fix in d.message and not_said not in d.message, d.message


def test_the_lab_scoreboards_k_and_r_name_keep_alive_and_request_bytes() -> None:
    """The lab's own models have no tcp_info: K is keep-alive, R is a request's bytes."""
    for state, words in [
        (WorkerState.KEEPALIVE, "hold idle keep-alive connections"),
        (WorkerState.READING, "hold requests still arriving"),
    ]:
        win = [
            _starving(None, 1 + i * 0.25, state=state, source="supervisor", phases=True)
            for i in range(8)
        ]
        d = diagnosis.starvation(win)
        assert d is not None and words in d.message, d.message


def test_thread_rows_are_left_out_of_totals_and_of_the_workers() -> None:
    snap = _starving(None, 1.0)
    assert len(snap.live_workers) == 4  # the thread row is not a worker
    totals = snap.totals()
    assert totals["accepts"] == 0 and totals["cpu_percent"] == 0.0  # not the thread's 3, 50
