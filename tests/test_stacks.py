"""`serverscope stack --pid`: a worker's stack, on the real thing. A gunicorn sync worker
stuck 12 s in its handler, a lab model under slow-io, the C original in its I/O wait, the
Go original's goroutines (pprof on a port of its own) and the Node original's JavaScript
(its inspector, opened by SIGUSR1 and closed again) each show where they wait; a missing
tool or a refused ptrace is one line naming the package or the fix; a target read 100
times, or cut short by a timeout, still serves. Parsers are checked on the tools' text."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path

import psutil
import pytest

from commands import main as cli
from conftest import get, wait_until
from lab.server import sampler_for
from lab.session import Session
from loadgen.levels import PRESETS
from originals.launch import Original
from readers import procfs, stackgo, stackjs, stacknative, stacktools
from readers.stackkind import Kind, detect
from readers.stacks import StackCapture, capture, text_lines
from realservers import WSGI_SLEEP_LINE, real_server  # noqa: F401 (a fixture)
from servers.config import ServerConfig
from values.snapshot import Role
from values.stackvalues import CaptureFailed, Frame

needs_eu_stack = pytest.mark.skipif(
    stacktools.find_tool("eu-stack") is None, reason="eu-stack: apt-get install elfutils"
)
needs_gdb = pytest.mark.skipif(stacktools.find_tool("gdb") is None, reason="apt-get install gdb")
needs_py_spy = pytest.mark.skipif(
    stacktools.find_tool("py-spy") is None, reason="py-spy: pip install py-spy"
)


def send(port: int, path: str) -> socket.socket:
    """A request sent and left waiting for its answer (the caller closes the socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return s


def abort(s: socket.socket) -> None:
    """Close with a reset: the originals' I/O waits end at once for a client gone."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def capture_until(
    pid: int, ok: Callable[[StackCapture], bool], timeout: float = 10.0, **kw: object
) -> StackCapture:
    """Capture again until `ok` holds (the request may not have reached the handler yet)."""
    deadline = time.monotonic() + timeout
    while True:
        cap = capture(pid, **kw)  # type: ignore[arg-type]
        if ok(cap):
            return cap
        if time.monotonic() > deadline:
            raise AssertionError("\n".join(["no such stack:", *text_lines(cap)]))
        time.sleep(0.1)


def frames(cap: StackCapture) -> list[Frame]:
    return [f for t in cap.threads for f in t.frames]


def names(cap: StackCapture) -> set[str]:
    return {f.function for f in frames(cap)}


def cli_json(*args: str) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["stack", *args, "--json"])
    return code, json.loads(out.getvalue())


# -- the real thing ----------------------------------------------------------------------


@needs_py_spy
@pytest.mark.slow
def test_gunicorn_sync_worker_stuck_in_its_handler_shows_the_sleep(
    real_server,  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    srv = real_server("gunicorn", workers=1)
    worker = srv.children()[0]
    client = send(srv.port, "/sleep?12")
    try:

        def in_sleep(c: StackCapture) -> bool:
            return any(f.function == "app" and f.line == WSGI_SLEEP_LINE for f in frames(c))

        cap = capture_until(worker, in_sleep)
        assert cap.kind == "python" and cap.method == "py-spy dump --nonblocking"
        assert cap.stopped_s == 0.0  # read without stopping it
        app = next(f for f in frames(cap) if f.function == "app")
        assert app.file is not None and app.file.endswith("wsgiapp.py") and app.module == "wsgiapp"
        # the command line, as JSON, names the same line; --native adds the C sleep
        code, doc = cli_json("--pid", str(worker), "--native")
        assert code == 0 and doc["ok"] and doc["method"] == "py-spy dump --native"
        native = [f["function"] for t in doc["threads"] for f in t["frames"]]  # type: ignore[attr-defined]
        assert "time_sleep" in native and "app" in native, native
        assert doc["stopped_s"] is not None and 0 < doc["stopped_s"] <= doc["took_s"]  # type: ignore[operator]
    finally:
        client.close()
        os.kill(srv.root, signal.SIGQUIT)  # quick shutdown: SIGTERM would wait for the sleep


@needs_py_spy
@pytest.mark.slow
def test_lab_model_under_slow_io_shows_the_io_wait() -> None:
    level = PRESETS["slow-io"].with_(clients=8, duration=15)
    with Session(ServerConfig(model="proc_spawn", workers=2), level) as session:

        def workers() -> list[int]:
            snap = session.sample()
            return [w.pid for w in snap.workers if w.role == Role.WORKER] if snap else []

        wait_until(lambda: len(workers()) == 2, 10, "the two workers")
        pid = workers()[0]

        def in_io_wait(c: StackCapture) -> bool:  # blocking.py: time.sleep(reply.io_ms / 1000)
            return any(
                f.function == "_answer" and f.module == "servers.blocking" for f in frames(c)
            )

        cap = capture_until(pid, in_io_wait)
        top = next(t for t in cap.threads if any(f.function == "_answer" for f in t.frames))
        src = Path(top.frames[0].file or "").read_text().splitlines()
        assert "time.sleep(reply.io_ms" in src[(top.frames[0].line or 0) - 1]


@needs_eu_stack
@needs_gdb
@pytest.mark.slow
def test_c_single_in_its_io_wait_shows_native_frames() -> None:
    with Original(ServerConfig(model="c:single")) as srv:
        client = send(srv.port, "/work?io_ms=6000")
        try:
            cap = capture_until(srv.root_pid, lambda c: "wait_io" in names(c))
            assert cap.kind == "native" and cap.method == "eu-stack"
            top = cap.threads[0].frames[0]
            assert "poll" in top.function and top.module is not None and "libc" in top.module
            wait_io = next(f for f in frames(cap) if f.function == "wait_io")
            assert wait_io.file and wait_io.file.endswith("common.h") and wait_io.line
            assert cap.stopped_s is not None and cap.stopped_s <= cap.took_s
            by_gdb = capture(srv.root_pid, method="gdb")
            assert by_gdb.method == "gdb" and {"wait_io", "main"} <= names(by_gdb), text_lines(
                by_gdb
            )
        finally:
            abort(client)
        assert get(srv.port).status == 200  # it served on after both reads


@pytest.mark.slow
def test_go_original_goroutine_dump_shows_the_io_wait() -> None:
    with Original(ServerConfig(model="go:server", workers=2)) as srv:
        assert srv.pprof_port and srv.pprof_port != srv.port
        assert stackgo.pprof_address(srv.root_pid) == ("127.0.0.1", srv.pprof_port)
        client = send(srv.port, "/work?io_ms=6000")
        try:
            cap = capture_until(srv.root_pid, lambda c: "main.waitIO" in names(c))
            assert cap.kind == "go" and cap.method and cap.method.startswith("pprof")
            g = next(t for t in cap.threads if any(f.function == "main.waitIO" for f in t.frames))
            assert g.tid is None and g.state == "select" and g.frames[0].function == "main.waitIO"
            assert g.frames[0].file and g.frames[0].file.endswith("server.go")
            assert g.origin and g.origin.startswith("created by net/http")
            # the goroutine that wrote the dump was the monitor's own request: not shown
            assert "runtime/pprof.writeGoroutineStacks" not in names(cap)
            out = io.StringIO()
            with redirect_stdout(out):
                assert cli.main(["stack", "--pid", str(srv.root_pid)]) == 0
            text = out.getvalue()
            assert "read with pprof goroutine dump" in text and "main.waitIO" in text, text
        finally:
            abort(client)


def test_the_lab_watches_the_go_original_on_its_server_port_only() -> None:
    with Original(ServerConfig(model="go:server", workers=1)) as srv:
        sampler = sampler_for(srv)  # type: ignore[arg-type]
        try:
            snap = sampler.sample()
        finally:
            sampler.close()
        assert [ln.port for ln in snap.listeners] == [srv.port]  # not pprof's


@pytest.mark.slow
def test_node_original_javascript_stack_busy_and_idle() -> None:
    with Original(ServerConfig(model="node:many_accepts", workers=1)) as srv:
        worker = srv.worker_pids()[0]
        listening = stackjs.loopback_listeners(worker)  # the server's own socket
        # idle but for its timers: a capture may catch one firing (seen under load: the
        # thread in `processTimers`), so it is read again until the loop is caught waiting
        idle = capture_until(
            worker, lambda c: c.ok and (c.threads[0].state or "").startswith("idle")
        )
        assert idle.kind == "node" and idle.threads[0].frames == (), text_lines(idle)
        client = send(srv.port, "/work?cpu_ms=3000")
        try:
            busy = capture_until(worker, lambda c: "burnCpu" in names(c))
            burn = busy.threads[0].frames[0]
            assert burn.function == "burnCpu" and burn.file and burn.file.endswith("app.js")
            above = Path(burn.file).read_text().splitlines()[: burn.line]
            assert next(ln for ln in reversed(above) if ln.startswith("function ")).startswith(
                "function burnCpu("
            )
            client.settimeout(20)
            assert client.recv(12) == b"HTTP/1.1 200"  # the pause did not break the request
        finally:
            client.close()
        # the inspector is closed again: no loopback listener of its own is left
        closed = lambda: stackjs.loopback_listeners(worker) == listening  # noqa: E731
        wait_until(closed, 10, "the inspector to close")
        assert get(srv.port).status == 200


# -- what cannot be read is one line -----------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A native process (coreutils sleep), stopped at the end."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_missing_native_tools_are_named_in_one_line(sleeper: int) -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "commands", "stack", "--pid", str(sleeper)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "serverscope stack: no native stack tool: install the Debian package elfutils "
        "(eu-stack) or gdb (apt-get install elfutils gdb)"
    ], done.stderr


def test_missing_py_spy_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.setattr(stacktools, "SCRIPTS_DIR", str(tmp_path))
        wait_until(lambda: detect(proc.pid).kind is Kind.PYTHON, 10, "the interpreter")
        cap = capture(proc.pid)
        assert not cap.ok and cap.kind == "python"
        assert (
            cap.error
            == "py-spy is not installed: install the PyPI package py-spy (pip install py-spy)"
        )
    finally:
        proc.kill()
        proc.wait()


@needs_eu_stack
@pytest.mark.skipif(os.geteuid() != 0, reason="drops from root to nobody")
def test_sigusr1_is_never_sent_to_a_process_it_would_end(sleeper: int) -> None:
    # SIGUSR1 opens Node's inspector, but ends a process that does not handle it (a Node
    # worker a moment after its fork, before Node set its handler, or not Node at all)
    assert procfs.catches(sleeper, signal.SIGUSR1) is False
    with pytest.raises(CaptureFailed, match="does not handle SIGUSR1 yet") as why:
        stackjs.open_inspector(sleeper, time.monotonic() + 5)
    assert "not sent, it would end the process" in str(why.value)
    assert psutil.pid_exists(sleeper) and psutil.Process(sleeper).status() != "zombie"
    handler = subprocess.Popen(  # a process that does handle it
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGUSR1, "
         "lambda *_: None); print(flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert handler.stdout is not None and handler.stdout.readline() == b"\n"
        assert procfs.catches(handler.pid, signal.SIGUSR1) is True
    finally:
        handler.kill()
        handler.wait()
    assert procfs.catches(2**22 + 7, signal.SIGUSR1) is None  # no such process


def test_refused_ptrace_says_why_in_one_line(sleeper: int) -> None:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # as nobody, the root-owned sleeper may not be traced
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            cap = capture(sleeper, method="eu-stack", timeout=20)
            os.write(w, json.dumps(cap.to_json()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        doc = json.loads(f.read() or "{}")
    os.waitpid(child, 0)
    assert doc["ok"] is False
    assert doc["error"] == f"not permitted to trace pid {sleeper} (uid 0, not yours): run as root"


def test_no_such_process_or_thread_is_one_line() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert capture(gone.pid).error == f"no process {gone.pid}"
    me = capture(os.getpid(), tid=gone.pid)
    assert me.error == f"no thread {gone.pid} in process {os.getpid()}"
    assert cli.main(["stack", "--pid", "0"]) == 2


# -- the target survives ---------------------------------------------------------------


@needs_py_spy
@needs_eu_stack
@needs_gdb
@pytest.mark.slow
def test_a_target_read_100_times_or_cut_short_still_serves(
    real_server,  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    srv = real_server("http.server")
    ways: list[dict[str, object]] = [{}, {"native": True}, {"method": "eu-stack"}]
    for i in range(100):
        cap = capture(srv.root, **ways[i % len(ways)])  # type: ignore[arg-type]
        assert cap.ok and cap.threads[0].frames, text_lines(cap)
        if cap.method and cap.method.startswith("py-spy"):
            assert any(f.function.endswith("serve_forever") for f in frames(cap)), text_lines(cap)
        if i % 10 == 9:
            assert get(srv.port).status in (200, 404)
    code, doc = cli_json("--pid", str(srv.root), "--tid", str(srv.root))
    assert code == 0 and [t["tid"] for t in doc["threads"]] == [srv.root]  # type: ignore[attr-defined]
    # gdb stopped by the deadline, attached or not: the target is left running and serves
    cut = capture(srv.root, method="gdb", timeout=0.3)
    assert cut.error == "gdb did not finish in time; stopped it", cut
    assert stacktools.thread_state(srv.root, srv.root) in ("S", "R")
    assert get(srv.port).status in (200, 404)


# -- parsers, on the tools' own text -------------------------------------------------------

GDB_TEXT = """\
[New LWP 10582]
Thread 2 (Thread 0x7f455d10f6c0 (LWP 10582) "python3"):
#0  0x00007f455d6ed545 in __GI___clock_nanosleep (clock_id=1) at ../sysdeps/clock_nanosleep.c:48
#1  0x00007f455db15ada in pysleep (timeout=<optimized out>) at ./Modules/timemodule.c:2159
#2  time_sleep (self=<optimized out>, timeout_obj=<optimized out>) at ./Modules/timemodule.c:383
#3  0x000055e180cae3f2 in ?? ()
#4  0x00007f455d6a71f5 in start_thread () from /lib/x86_64-linux-gnu/libc.so.6

Thread 1 (Thread 0x7f455de71b80 (LWP 10580) "python3"):
#0  0x00007f455d6ed545 in __GI___clock_nanosleep () from /lib/x86_64-linux-gnu/libc.so.6
"""

EU_TEXT = """\
PID 10580 - process
TID 10580:
#0  0x00007f455d6ed545 __GI___clock_nanosleep - /usr/lib/x86_64-linux-gnu/libc.so.6
    ../sysdeps/unix/sysv/linux/clock_nanosleep.c:48:7
#1  0x000055e180cae3f2 - /usr/bin/bash
#2  0x00007f455db15ada time_sleep - /usr/lib/libpython3.11.so.1.0
TID 10582:
#0  0x00007f455d6ed545 __GI___clock_nanosleep - /usr/lib/x86_64-linux-gnu/libc.so.6
"""

GO_TEXT = """\
goroutine 1 [IO wait]:
internal/poll.runtime_pollWait(0x7f2c4c1e8f08, 0x72)
\t/usr/lib/go-1.19/src/runtime/netpoll.go:305 +0x89
net/http.(*Server).Serve(0xc00015c000, {0x7b3d38, 0xc000012030})
\t/usr/lib/go-1.19/src/net/http/server.go:3070 +0x385

goroutine 4 [select, 2 minutes]:
main.waitIO({0x7b4180, 0xc000152000}, 0x40b7700000000000)
\t/src/server.go:97 +0x145
created by net/http.(*Server).Serve in goroutine 1
\t/usr/lib/go-1.19/src/net/http/server.go:3102 +0x4db
"""


def test_parsers_read_the_tools_text() -> None:
    g = stacknative.parse_gdb(GDB_TEXT, 10580)
    assert [t.tid for t in g] == [10582, 10580] and g[0].name == "python3"
    assert g[0].frames[0] == Frame(
        "__GI___clock_nanosleep", "../sysdeps/clock_nanosleep.c", 48, None, True
    )
    assert g[0].frames[2].function == "time_sleep" and g[0].frames[2].line == 383
    assert g[0].frames[3].function == "??" and g[0].frames[4].module == "libc.so.6"
    e = stacknative.parse_eu_stack(EU_TEXT, 10580)
    assert [t.tid for t in e] == [10580, 10582]
    assert e[0].frames[0].line == 48 and e[0].frames[0].module == "libc.so.6"
    assert e[0].frames[1] == Frame("??", module="bash", native=True)
    go = stackgo.parse_goroutines(GO_TEXT)
    assert [t.name for t in go] == ["goroutine 1", "goroutine 4"]
    assert go[0].frames[1].function == "net/http.(*Server).Serve"
    assert go[0].frames[1].module == "net/http" and go[0].frames[1].line == 3070
    assert (
        go[1].state == "select, 2 minutes" and go[1].origin == "created by net/http.(*Server).Serve"
    )


def test_stop_bound_is_read_around_the_stop_seen() -> None:
    w = stacktools.StopWatch(os.getpid(), os.getpid())
    w.samples = [(0.0, False), (0.001, False), (0.002, True), (0.003, True), (0.005, False)]
    w._done.set()
    assert w.finish() == pytest.approx(0.004)  # from 1 ms (last running) to 5 ms
    w.samples = [(0.0, False), (0.001, False), (0.004, False)]
    assert w.finish() == pytest.approx(0.003)  # none seen: the longest blind interval


def test_runtime_is_told_by_evidence_not_name() -> None:
    me = detect(os.getpid())
    assert me.kind is Kind.PYTHON and "Py_Initialize" in me.evidence
    sh = subprocess.Popen(["sleep", "30"])
    try:
        assert detect(sh.pid).kind is Kind.NATIVE
    finally:
        sh.kill()
        sh.wait()
