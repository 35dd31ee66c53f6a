"""`--export` on the command line: attach as a headless agent, and bad values in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import psutil
import pytest

from conftest import assert_all_gone, wait_until

parser = pytest.importorskip("prometheus_client.parser")


def _scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {f.name: f.samples for f in parser.text_string_to_metric_families(text)}


def test_attach_no_ui_is_an_agent_that_exports_what_it_samples(start_server):
    # the held connections outlive the agent's start (2-5 s on a busy 2-core machine;
    # the default 5 s keep-alive closed them before its first sample)
    sup = start_server("many_accepts", workers=2, keepalive_timeout=60.0)
    port = int(sup.url.rsplit(":", 1)[1])
    held = []
    agent = None
    try:
        for _ in range(2):  # two keep-alive connections held open: the ground truth
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            s.recv(4096)
            held.append(s)
        agent = subprocess.Popen(
            # by pid: by port, attach takes the common parent of the port's owners as the
            # server, and here that parent is this test process (the agent's parent too)
            [
                sys.executable,
                "-m",
                "serverscope",
                "attach",
                "--pid",
                str(sup.root_pid),
                "--export",
                "127.0.0.1:0",
                "--no-ui",
                "--period",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = agent.stderr.readline()
        assert "exporting on http://127.0.0.1:" in line, line
        url = line.split("exporting on ")[1].strip()
        fams: dict[str, list] = {}

        def conns_seen() -> bool:
            nonlocal fams
            fams = _scrape(url)
            return sum(s.value for s in fams.get("serverscope_worker_open_connections", [])) == 2

        wait_until(conns_seen, 15, "the agent's metrics to show the 2 held connections")
        pids = {int(s.labels["pid"]) for s in fams["serverscope_worker_open_connections"]}
        root = psutil.Process(sup.root_pid)
        assert pids <= {root.pid} | {c.pid for c in root.children(recursive=True)}
        (limit,) = fams["serverscope_listener_queue_limit"]
        assert (limit.labels["port"], limit.value) == (str(port), 511)
        # attached servers have accepts now (exact with eBPF, else the sock_diag estimate),
        # counted from the attach: the 2 connections were accepted before it
        accepts = fams.get("serverscope_worker_accepts", [])
        assert accepts and sum(s.value for s in accepts) == 0
        assert agent.stdout.read(0) == ""  # nothing drawn
    finally:
        for s in held:
            s.close()
        if agent is not None:
            agent.send_signal(signal.SIGINT)
            assert agent.wait(10) == 0
            out = agent.stdout.read()
            agent.stdout.close()
            agent.stderr.close()
            assert out == ""
            assert_all_gone([agent.pid])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--model", "single", "--export", "127.0.0.1:x"], "expected HOST:PORT"),
        (["run", "--model", "single", "--export", "0.0.0.0:9464"], "--export-any-host"),
        (["--export", "10.1.2.3:9464"], "--export-any-host"),
        (["attach", "--pid", "1", "--no-ui"], "--no-ui goes with --export"),
    ],
)
def test_a_bad_export_is_refused_in_one_line(argv, says):
    out = subprocess.run(
        [sys.executable, "-m", "serverscope", *argv], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert says in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_a_busy_export_port_is_named_before_anything_starts():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "serverscope",
                "run",
                "--model",
                "single",
                "--export",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 2
    assert f"cannot export on 127.0.0.1:{port}" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_pids(fams: dict[str, list]) -> set[int]:
    return {int(s.labels["pid"]) for s in fams.get("serverscope_worker_state", [])}


def _wait_for_workers(url: str, proc: subprocess.Popen, n: int) -> dict[str, list]:
    fams: dict[str, list] = {}

    def seen() -> bool:
        nonlocal fams
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        try:
            fams = _scrape(url)
        except OSError:
            return False
        return len(_model_pids(fams)) == n

    wait_until(seen, 30, f"{n} workers on {url}")
    return fams


def test_the_tui_exports_the_snapshots_it_draws():
    port = _free_port()
    env = {
        **os.environ,
        # Textual's web driver: the TUI runs without a terminal (as under serverscope web)
        "TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver",
        "COLUMNS": "120",
        "ROWS": "40",
    }
    tui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serverscope",
            "--load",
            "none",
            "--workers",
            "3",
            "--export",
            f"127.0.0.1:{port}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        fams = _wait_for_workers(f"http://127.0.0.1:{port}/metrics", tui, 3)
        root = psutil.Process(tui.pid)
        assert _model_pids(fams) <= {c.pid for c in root.children(recursive=True)}
        assert {s.labels["model"] for s in fams["serverscope_worker_state"]} == {"many_accepts"}
        (limit,) = fams["serverscope_listener_queue_limit"]
        assert limit.value == 511
        pids = [tui.pid, *(c.pid for c in root.children(recursive=True))]
    finally:
        tui.terminate()
        tui.wait(15)
        tui.stdin.close()
        tui.stderr.close()
    assert_all_gone(pids)


def test_run_exports_while_it_runs():
    port = _free_port()
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serverscope",
            "run",
            "--model",
            "many_accepts",
            "--workers",
            "2",
            "--load",
            "burst",
            "--duration",
            "3",
            "--export",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fams = _wait_for_workers(f"http://127.0.0.1:{port}/metrics", run, 2)
        assert {s.labels["model"] for s in fams["serverscope_worker_state"]} == {"many_accepts"}
        assert run.wait(60) == 0, run.stderr.read()
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(15)
        run.stderr.close()
    assert_all_gone([run.pid])
