"""Stuck workers' stacks taken by themselves, on the real thing: a gunicorn sync worker
stuck 12 s in its handler is captured once (not every sample) with the sleep's line; a
lab model under slow I/O, through the `run` command docs/stacks.md prints (its JSON lists
the episodes with their stacks), its recording keeps them and a replay's log shows them."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import time
from pathlib import Path

import pytest

from commands import main as cli
from judging.analyser import Analyser
from judging.events import derive_events
from judging.stuck import StuckSettings, event_line
from lab.autocapture import AutoCapture
from readers import stacktools
from realservers import WSGI_SLEEP_LINE, real_server  # noqa: F401 (a fixture)
from sources.sampler import Sampler
from values.recording import read_recording
from values.snapshot import Snapshot
from values.stuck import StuckCapture

pytestmark = [
    pytest.mark.skipif(stacktools.find_tool("py-spy") is None, reason="py-spy: pip install py-spy"),
    pytest.mark.slow,
]


@pytest.mark.timeout(60)
def test_gunicorn_sync_worker_stuck_12_s_is_captured_once_with_its_sleep(
    real_server,  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    srv = real_server("gunicorn", workers=2)
    client = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    sampler = Sampler.attach(pid=srv.root)
    analyser = Analyser()
    auto = AutoCapture(StuckSettings(stuck_after=1.0))
    came: list[StuckCapture] = []
    snaps: list[Snapshot] = []
    try:
        client.sendall(b"GET /sleep?12 HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = time.monotonic() + 20
        # sample at the lab's period until 8 samples past the capture (counted, not timed:
        # a sample on a busy machine takes longer): many samples, one capture
        while time.monotonic() < deadline:
            snap = auto.step(analyser.annotate(sampler.sample()))
            snaps.append(snap)
            came += snap.stuck
            if came and sum(1 for s in snaps if s.time > came[0].time) >= 8:
                break
            time.sleep(0.25)
        assert came, "no capture in 20 s"
        samples_after = sum(1 for s in snaps if s.time > came[0].time)
        assert samples_after >= 8
        assert len(came) == 1 and auto.taken == 1 and auto.episodes == 1, came
        c = came[0]
        assert c.episode.worker == f"pid {c.episode.pid}"
        assert c.episode.pid in srv.children() and not c.episode.exact  # attached: no age
        host, port = client.getsockname()[:2]
        assert c.episode.client == f"{host}:{port}"  # the one connection it holds
        line = event_line(c, c.time)
        # in its handler's sleep, not reading its client (it was "stuck reading")
        assert line.startswith(f"pid {c.episode.pid} stuck working at least")
        assert f"from {host}:{port}: `app` (wsgiapp.py:{WSGI_SLEEP_LINE})" in line, line
        assert c.stack.ok and c.stack.method == "py-spy dump --nonblocking"
        fs = [f for t in c.stack.threads for f in t.frames]
        assert any(f.function == "app" and f.line == WSGI_SLEEP_LINE for f in fs), fs
        d = next(d for d in snaps[-1].diagnoses if d.rule == "stuck")
        assert d.message.startswith("stuck: 1 of 1 stuck workers (")
        assert f"`app` (wsgiapp.py:{WSGI_SLEEP_LINE})" in d.message
    finally:
        auto.close()
        sampler.close()
        client.close()
        os.kill(srv.root, signal.SIGQUIT)  # quick shutdown: SIGTERM would wait for the sleep


DOCS = Path(__file__).resolve().parents[1] / "docs" / "stacks.md"


def documented_run() -> list[str]:
    """The `serverscope run` line docs/stacks.md prints in its stuck-workers section."""
    lines = [ln for ln in DOCS.read_text().splitlines() if ln.startswith("serverscope run ")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])[1:]


@pytest.mark.timeout(60)
def test_the_documented_run_under_slow_io_lists_episodes_records_and_replays_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/stacks.md's command, as written: two proc_spawn workers each in a 3 s I/O
    wait; its JSON lists both episodes with the stack of the wait (blocking.py's
    `_answer`), the request and the client; the recording keeps them; a replay's event
    log shows them."""
    monkeypatch.chdir(tmp_path)
    argv = documented_run()
    assert cli.main(argv) == 0
    doc = json.loads((tmp_path / argv[argv.index("--json") + 1]).read_text())
    rec = tmp_path / argv[argv.index("--record") + 1]
    stuck = doc["stuck"]
    assert len(stuck) == 2 and doc["stuck_episodes"] >= 2, stuck
    assert {s["worker"] for s in stuck} == {"worker 0", "worker 1"}
    for s in stuck:
        assert s["what"] == "request" and s["since_exact"]
        assert s["request"].startswith("GET /work?") and "io_ms=3000" in s["request"]
        assert s["client"].startswith("127.0.0.1:")
        assert s["where"].startswith("`_answer` (blocking.py:"), s["where"]
        assert 1.0 <= s["stuck_s"] < 3.0
        assert s["stack"]["ok"] and s["stack"]["threads"][0]["frames"][0]["function"] == "_answer"
    assert any(d["rule"] == "stuck" for d in doc["diagnoses"])
    recorded = list(read_recording(rec))
    kept = [c for s in recorded for c in s.stuck]
    assert sorted(c.episode.worker for c in kept) == ["worker 0", "worker 1"]
    lines = [e.message for e in derive_events(recorded) if e.kind == "stuck"]
    assert len(lines) == 2
    assert all("stuck in one request" in m and "from 127.0.0.1:" in m for m in lines), lines
    assert all("`_answer` (blocking.py:" in m for m in lines)


@pytest.mark.timeout(60)
@pytest.mark.skipif(stacktools.find_tool("eu-stack") is None, reason="apt-get install elfutils")
def test_apache_prefork_starved_by_keepalive_clients_stands_in_the_keepalive_read(
    real_server,  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    """8 of 8 children each hold a keep-alive connection nobody uses: all stuck in
    keep-alive, each captured once (eu-stack), all in the same read: the evidence behind
    the starvation banner."""
    from test_realservers import _client

    srv = real_server("apache", mpm="prefork", max_workers=8, start=8, keepalive_timeout=30)
    clients = [_client(srv.port) for _ in range(8)]  # served, then held idle
    sampler = Sampler.attach(port=srv.port)
    analyser = Analyser()
    auto = AutoCapture(StuckSettings(stuck_after=1.0))
    came: list[StuckCapture] = []
    try:
        deadline = time.monotonic() + 25
        while len(came) < 8 and time.monotonic() < deadline:
            snap = auto.step(analyser.annotate(sampler.sample()))
            came += snap.stuck
            time.sleep(0.25)
        snap = auto.step(analyser.annotate(sampler.sample()))
        assert len(came) == 8 and len({c.episode.pid for c in came}) == 8, came
        assert all(c.episode.what == "keepalive" and c.stack.method == "eu-stack" for c in came)
        # each child waits in the read of its idle connection (APR's socket read, polling)
        for c in came:
            fs = [f.function for f in c.stack.threads[0].frames]
            assert "apr_socket_recv" in fs[:4] and "poll" in fs[0], fs
        # all in the one place (a child whose state the outside view read otherwise for
        # over a second is between episodes, not counted: 7 of 7 seen once under load)
        d = next(d for d in snap.diagnoses if d.rule == "stuck")
        m = re.match(r"stuck: (\d) of \1 stuck workers \(in keep-alive\) are in `(.*)`", d.message)
        assert m is not None and int(m[1]) >= 6 and "poll" in m[2], d
        assert "other stack" not in d.message
    finally:
        auto.close()
        sampler.close()
        for cl in clients:
            cl.close()


@pytest.mark.solo
@pytest.mark.timeout(60)
def test_thread_workers_under_the_gil_are_seen_waiting_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """goroutines (event-loop threads in one CPython) under half-second CPU requests: the
    automatic captures of a GIL process's thread workers read native frames, and the
    diagnosis counts the threads in CPython's GIL wait, each capture naming the handler
    under it. Seen without the native frames: py-spy shows the waiting thread in the same
    Python line as the one running, so nothing could be said."""
    monkeypatch.chdir(tmp_path)
    argv = [
        "run", "--model", "goroutines", "--workers", "4", "--clients", "8", "--cpu-ms", "500",
        "--duration", "4", "--stuck-after", "1", "--json", "gil.json",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    doc = json.loads((tmp_path / "gil.json").read_text())
    taken = [s for s in doc["stuck"] if s["stack"]["ok"]]
    assert taken and all(s["stack"]["method"] == "py-spy dump --native" for s in taken), doc
    assert all("`burn_cpu` (app.py:" in s["where"] for s in taken), [s["where"] for s in taken]
    # a diagnosis covers the captures of the episodes still open when it is made: the run's
    # last one may hold only the thread that had the GIL (seen once in CI: 1 of 4 stacks, in
    # `burn_cpu` itself), so the run's and the teardown's are read together
    teardown = (doc["teardown"] or {}).get("diagnoses", [])
    stuck = [d["message"] for d in doc["diagnoses"] + teardown if d["rule"] == "stuck"]
    waiting = [s for s in taken if s["where"].startswith(("`take_gil`", "`pthread_cond_"))]
    assert waiting, [s["where"] for s in taken]
    assert any(re.search(r"\d+ of \d+ wait for the GIL", m) for m in stuck), stuck
