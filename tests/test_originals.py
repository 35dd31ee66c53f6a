"""The seed's own systems, run for real: each builds, answers like the models, keeps
connections alive for the load generator, and leaves no process behind, even when the
process that started it is SIGKILLed. Ground truth is by pid (/proc), and for per-worker
counts the X-Worker header: the pid of the process that wrote the response.

Needs Debian's gcc, nodejs, golang-go and apache2 (.ci/run installs them as root); each
test skips naming the package when its toolchain is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from conftest import get, read_response, wait_until
from loadgen.levels import LoadLevel
from loadgen.runner import LoadRunner
from originals import build
from originals.launch import Original
from originals.registry import NAMES, spec
from plumbing.process import pid_alive
from servers.config import ConfigError, ServerConfig
from servers.supervisor import BindError

# small pools: the behaviour under test does not need Apache's 75-thread defaults
SMALL = {
    "c:proc_spawn": {"workers": 4},
    "node:simple_cluster": {"workers": 2},
    "node:many_accepts": {"workers": 2},
    "apache:prefork": {"start_servers": 2, "min_spare": 1, "max_spare": 3, "max_workers": 8},
    "apache:worker": {"workers": 1, "threads_per_child": 8},
    "apache:event": {"workers": 1, "threads_per_child": 8},
}


def needs(name: str) -> None:
    t = spec(name).toolchain
    if not t.present:
        pytest.skip(f"{name} needs {t.command}: install the Debian package {t.package}")


def group_empty(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def assert_gone(pids: list[int], pgid: int, timeout: float = 8.0) -> None:
    wait_until(
        lambda: not any(pid_alive(p) for p in pids) and group_empty(pgid),
        timeout,
        f"pids {pids} and process group {pgid} to be gone",
    )


@pytest.fixture
def start_original() -> Iterator[Callable[..., Original]]:
    """Start originals on free loopback ports; each is stopped and checked gone by pid."""
    started: list[Original] = []

    def start(name: str, **knobs: object) -> Original:
        needs(name)
        srv = Original(ServerConfig(model=name, **knobs))  # type: ignore[arg-type]
        srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        pids = [*srv.pids(), srv.watchdog_pid]
        run_dir = srv.run_dir
        srv.stop()
        assert_gone(pids, srv.root_pid)
        assert run_dir is None or not run_dir.exists()


@pytest.mark.parametrize("name", NAMES)
def test_each_original_serves_the_models_endpoints_and_leaves_no_process(
    name: str, start_original: Callable[..., Original]
) -> None:
    knobs = {"backlog": 77, "keepalive_timeout": 0.5, "max_cpu_ms": 50.0}
    srv = start_original(name, **knobs, **SMALL.get(name, {}))
    pids = [*srv.pids(), srv.watchdog_pid]
    root = srv.root_pid
    assert srv.port and pid_alive(root)
    if shutil.which("ss"):  # the listen backlog asked for is the kernel's limit (Send-Q)
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{srv.port}"], capture_output=True, text=True, timeout=10
        ).stdout.split()
        assert out[2] == "77", out

    hello = get(srv.port, "/")
    assert (hello.status, hello.body) == (200, b"hello from serverscope\n")
    work = get(srv.port, "/work?cpu_ms=5")
    assert (work.status, work.body) == (200, b"")
    sized = get(srv.port, "/work?cpu_ms=1&io_ms=1&bytes=100000")
    assert (sized.status, sized.body) == (200, b"x" * 100000)
    over = get(srv.port, "/work?cpu_ms=51")  # --max-cpu-ms, as the models (before: 200)
    assert (over.status, over.body) == (400, b"cpu_ms must be between 0 and 50, got 51\n")
    assert get(srv.port, "/work?cpu_ms=abc").status == 400
    assert get(srv.port, "/work?bogus=1").status == 400
    assert get(srv.port, "/work?bytes=1.5").status == 400
    assert get(srv.port, "/nowhere").status == 404

    # keep-alive: three requests on one connection, none of them closes it
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        buf = bytearray()
        for path in ("/", "/work?bytes=10", "/"):
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            r = read_response(s, buf)
            assert r.status == 200
            assert r.headers.get("connection", "").lower() != "close"
        # then it closes the idle connection after --keepalive-timeout (Node 20 adds 1 s)
        idle_from = time.monotonic()
        assert s.recv(1) == b""
        assert 0.4 <= time.monotonic() - idle_from <= 4.0  # the default would be 5 s

    srv.stop()
    assert_gone(pids, root)


@pytest.mark.parametrize("name", NAMES)
def test_the_fast_load_engine_reuses_one_connection_per_client_against_each_original(
    name: str, start_original: Callable[..., Original]
) -> None:
    srv = start_original(name, **SMALL.get(name, {}))
    # 80 requests: no connection reaches MaxKeepAliveRequests (100), which would close it
    level = LoadLevel(clients=4, cpu_ms=1, requests=80, duration=20, read_timeout=10)
    with LoadRunner(srv.url, level) as run:
        result = run.wait(30)
        assert result is not None, run.error
    stats = result.stats
    assert stats.requests == 80, result.to_json_dict()
    assert dict(stats.status) == {200: 80}
    assert not any(stats.errors.values()), stats.errors
    assert result.connect.count == 4  # keep-alive held: one connection per client


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes, every thread's, in ns from /proc/PID/task/TID/schedstat
    (utime+stime in /proc/PID/stat comes in 10 ms ticks)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that just exited
    return total / 1e9


@pytest.mark.parametrize("name", NAMES)
def test_concurrent_work_requests_burn_their_cpu_ms_each_on_every_original(
    name: str, start_original: Callable[..., Original]
) -> None:
    # Four requests of 100 ms CPU at once must cost the server 0.4 s of CPU: a clock
    # shared by a process's threads (os.clock under Apache worker/event) would burn less.
    srv = start_original(name, **SMALL.get(name, {}))
    pids = srv.pids()
    before = cpu_seconds(pids)
    statuses: list[int] = []

    def one() -> None:
        statuses.append(get(srv.port, "/work?cpu_ms=100", timeout=30).status)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 4
    used = cpu_seconds([p for p in pids if pid_alive(p)]) - before
    assert 0.38 <= used <= 0.6, f"{name}: 4 x 100 ms of CPU cost {used:.3f} s"


def _running_threads(pids: list[int]) -> int:
    """Threads of these processes in state R (running or waiting for a CPU)."""
    n = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                stat = task.read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue
            n += stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] == b"R"
    return n


def _idle(pids: list[int], readings: int = 4) -> Callable[[], bool]:
    """A condition: no thread of `pids` has been running in `readings` readings in a row."""
    quiet = [0]

    def check() -> bool:
        quiet[0] = quiet[0] + 1 if _running_threads(pids) == 0 else 0
        return quiet[0] >= readings

    return check


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("c:single", "reset"),
        ("c:single", "close"),
        ("go:server", "close"),
        ("node:many_accepts", "close"),
    ],
)
def test_an_original_stops_work_for_a_client_that_has_gone(
    name: str, how: str, start_original: Callable[..., Original]
) -> None:
    """A pipeline of 4 x cpu_ms=600 whose client leaves during the first: the work in hand may
    end (a burn blocks Node's loop; a FIN alone is a half-close to C), the rest is dropped
    (C also stops a burn in hand once its client has reset). Before: C and Go burnt the
    next request too (4 x 4,000 ms closed at 0.5 s: 7.5-8.1 s), Node all of them (9-16 s)."""
    srv = start_original(name, **SMALL.get(name, {}))
    pids = srv.pids()
    before = cpu_seconds(pids)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /work?cpu_ms=600 HTTP/1.1\r\nHost: t\r\n\r\n" * 4)
    wait_until(lambda: cpu_seconds(pids) - before >= 0.1, 10, "the first burn to be under way")
    if how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    at_close = cpu_seconds(pids)
    wait_until(_idle(pids), 30, f"{name} to stop burning")
    after = cpu_seconds(pids) - at_close
    in_hand = 0.6 - (at_close - before)  # what was left of the first request's 600 ms
    limit = 0.25 if how == "reset" else in_hand + 0.25
    print(f"\n{name}, client {how}: {after:.2f} s of CPU after it left ({in_hand:.2f} s in hand)")
    assert after <= limit, f"{after:.2f} s burnt for a client that had gone (limit {limit:.2f})"
    assert get(srv.port, "/").status == 200


def test_proc_spawn_with_four_workers_spreads_200_sequential_connections_evenly(
    start_original: Callable[..., Original],
) -> None:
    srv = start_original("c:proc_spawn", workers=4)
    workers = srv.worker_pids()
    assert len(workers) == 4

    def all_in_accept() -> bool:
        chans = [Path(f"/proc/{p}/wchan").read_text() for p in workers]
        return all(c in ("inet_csk_accept", "0") for c in chans)  # "0": wchan hidden

    wait_until(all_in_accept, 10, "every worker blocked in accept()")
    counts: Counter[int] = Counter()
    for _ in range(200):
        r = get(srv.port, "/")
        assert r.status == 200
        counts[int(r.headers["x-worker"])] += 1
    assert set(counts) == set(workers), counts  # the header names the real workers
    assert all(40 <= n <= 60 for n in counts.values()), counts


def exchange(port: int, data: bytes) -> int:
    """Send raw bytes, return the status of the one answer (the server then closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        r = read_response(s)
        assert s.recv(1) == b""  # and it closed the connection
        return r.status


def test_the_c_http_parser_answers_bad_requests_as_the_models_do_and_stays_up(
    start_original: Callable[..., Original],
) -> None:
    srv = start_original("c:single", timeout=1)
    p = srv.port
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n"
    assert exchange(p, big) == 431  # read whole, despite the unread bytes (lingering close)
    assert exchange(p, b"garbage\r\n\r\n") == 400
    assert exchange(p, b"GET / HTTP/2.0\r\n\r\n") == 505
    assert exchange(p, b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n") == 413
    assert exchange(p, b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n") == 400
    assert exchange(p, b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 501
    assert exchange(p, b"GET / HTTP/1.1\r\nHost: x\r\n") == 408  # after --timeout 1
    assert exchange(p, b"GET /work?cpu_ms=nan HTTP/1.1\r\nConnection: close\r\n\r\n") == 400
    with socket.create_connection(("127.0.0.1", p), timeout=10) as s:  # pipelined, in order
        s.sendall(b"GET / HTTP/1.1\r\n\r\nGET /work?bytes=3 HTTP/1.1\r\n\r\nGET / HTTP/1.0\r\n\r\n")
        buf = bytearray()
        bodies = [read_response(s, buf).body for _ in range(3)]
        assert bodies == [b"hello from serverscope\n", b"xxx", b"hello from serverscope\n"]
        assert s.recv(1) == b""  # HTTP/1.0 without keep-alive: closed after
    assert get(p, "/").status == 200


def test_proc_spawn_forks_the_seeds_250_workers_by_default(
    start_original: Callable[..., Original],
) -> None:
    srv = start_original("c:proc_spawn")
    assert srv.config.workers == 250
    assert len(srv.worker_pids()) == 250


_LAUNCH_AND_WAIT = """
import json, sys, time
from servers.config import ServerConfig
from originals.launch import Original
srv = Original(ServerConfig.from_json(sys.argv[1])).start()
print(json.dumps({"pids": srv.pids(), "watchdog": srv.watchdog_pid, "root": srv.root_pid,
                  "run_dir": str(srv.run_dir)}), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("name", NAMES)
def test_sigkill_of_the_launching_process_leaves_no_orphan(name: str) -> None:
    needs(name)
    cfg = ServerConfig(model=name, **SMALL.get(name, {}))  # type: ignore[arg-type]
    src = str(Path(build.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCH_AND_WAIT, cfg.to_json()],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else b""
        assert line, "the launcher printed nothing"
        info = json.loads(line)
        pids = [*info["pids"], info["watchdog"]]
        assert len(info["pids"]) >= 1 + int(SMALL.get(name, {}).get("workers", 0))
        assert all(pid_alive(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert_gone(pids, info["root"])
        wait_until(lambda: not Path(info["run_dir"]).exists(), 5, "the run dir to go")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_a_busy_port_is_one_line_naming_the_port() -> None:
    needs("c:single")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(BindError) as e:
            Original(ServerConfig(model="c:single", port=port)).start()
    msg = str(e.value)
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "in use" in msg


def test_a_missing_toolchain_is_one_line_naming_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for name, package in (
        ("c:single", "gcc"),
        ("node:many_accepts", "nodejs"),
        ("go:server", "golang-go"),
    ):
        with pytest.raises(build.BuildError) as e:
            Original(ServerConfig(model=name)).start()
        msg = str(e.value)
        assert "\n" not in msg and f"apt-get install {package}" in msg


def test_an_original_refuses_a_knob_it_does_not_have() -> None:
    with pytest.raises(ConfigError, match="has no --threads-per-child"):
        Original(ServerConfig(model="c:single", threads_per_child=2))
    with pytest.raises(ConfigError, match="max-keepalive-requests"):
        Original(ServerConfig(model="go:server", max_keepalive_requests=5))
    with pytest.raises(ConfigError, match="unknown original"):
        Original(ServerConfig(model="c:nothing"))


def test_builds_c_to_a_cache_keyed_by_source_hash_and_concurrent_builds_agree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    needs("c:single")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    src_dir = Path(build.__file__).resolve().parent / "c"
    before = sorted(p.name for p in src_dir.iterdir())
    results: list[Path] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(build.binary(spec("c:single")))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 3
    assert len(set(results)) == 1
    exe = results[0]
    assert exe.is_relative_to(tmp_path / "serverscope" / "build") and os.access(exe, os.X_OK)
    assert [p.name for p in exe.parent.parent.iterdir()] == [exe.parent.name]  # no temp left
    assert sorted(p.name for p in src_dir.iterdir()) == before  # nothing in the source tree


@pytest.mark.parametrize("name", ["node:simple_cluster", "go:server", "apache:event"])
def test_a_port_taken_after_the_check_is_still_reported_as_busy_in_one_line(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs(name)
    from originals import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        # the port looked free when chosen, and was taken before the original bound it
        monkeypatch.setattr(launch, "free_port", lambda host: port)
        with pytest.raises(BindError) as e:
            Original(ServerConfig(model=name, **SMALL.get(name, {}))).start()  # type: ignore[arg-type]
    msg = str(e.value)
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "in use" in msg


def serverscope(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "serverscope", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def test_serve_list_shows_each_original_with_its_origin_and_toolchain() -> None:
    out = serverscope("serve", "--list")
    assert out.returncode == 0
    rows = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.strip()}
    for name in NAMES:
        sp = spec(name)
        assert sp.model.origin in rows[name]
        status = "present" if sp.toolchain.present else f"apt-get install {sp.toolchain.package}"
        assert f"{sp.toolchain.command}: {status}" in rows[name]
    assert "single" in rows and "goroutines" in rows  # the Python models are still listed


def test_serve_runs_an_original_in_the_foreground_until_ctrl_c() -> None:
    needs("c:proc_spawn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "serverscope", "serve", "c:proc_spawn", "--workers", "3"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"c:proc_spawn serving on http://127.0.0.1:{port}/" in line, line
        root = int(line.split("root pid ")[1].split(")")[0])
        assert "3 worker processes" in line
        assert get(port).status == 200
        pids = [root, *(c.pid for c in psutil.Process(root).children())]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert "stopped" in proc.stdout.read()
        assert_gone(pids, root)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
