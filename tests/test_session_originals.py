"""An original runs under the same Session as a Python model (issue 15): started through
`lab.server.open_server`, sampled from outside by pid, and gone by pid afterwards, even
when the `serverscope run` process driving it is SIGKILLed. Needs Debian's gcc and nodejs
(skips naming the package otherwise)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from conftest import assert_all_gone, wait_until
from lab.server import OriginalServer, model_spec, open_server
from lab.session import Session
from loadgen.levels import LoadLevel
from originals.registry import spec
from servers.config import ServerConfig
from servers.supervisor import Supervisor

CLI = [sys.executable, "-m", "serverscope"]
RUN_ARGS = ["--workers", "2", "--load", "steady", "--duration", "60"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def needs(name: str) -> None:
    t = spec(name).toolchain
    if not t.present:
        pytest.skip(f"{name} needs {t.command}: install the Debian package {t.package}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_open_server_gives_a_supervisor_for_a_model_and_an_adapter_for_an_original() -> None:
    assert isinstance(open_server(ServerConfig(model="single")), Supervisor)
    assert isinstance(open_server(ServerConfig(model="c:single")), OriginalServer)
    assert model_spec("node:many_accepts").name == "node:many_accepts"
    assert model_spec("many_accepts").name == "many_accepts"


def test_a_session_of_an_original_samples_it_by_pid_and_leaves_no_process() -> None:
    needs("c:proc_spawn")
    level = LoadLevel(clients=4, duration=2.0)
    session = Session(ServerConfig(model="c:proc_spawn", workers=4), level)
    try:
        session.start()
        srv = session.server
        assert srv is not None and session.supervisor is None
        pids = [*srv.pids(), getattr(srv, "watchdog_pid", 0)]
        assert len(pids) == 6  # root, 4 workers, the watchdog
        wait_until(lambda: session.sample() is not None, 5, "a first sample")
        wait_until(
            lambda: (s := session.sample()) is not None and s.model.root_pid == srv.root_pid,
            10,
            "a snapshot of the original's root pid",
        )
        snap = session.sample()
        assert snap is not None
        assert {w.pid for w in snap.workers} >= set(srv.pids()[1:])  # every worker seen
        runner_pid = session.runner.pid if session.runner and session.runner.pid else 0
    finally:
        session.close()
    assert session.server is None
    assert_all_gone([p for p in [*pids, runner_pid] if p], timeout=10)


def test_sigkill_of_serverscope_run_on_an_original_leaves_no_process() -> None:
    needs("node:many_accepts")
    proc = subprocess.Popen(
        [*CLI, "run", "--model", "node:many_accepts", *RUN_ARGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    pids: list[int] = []
    try:

        def everything_running() -> bool:
            # watchdog, node primary, 2 workers, and the load generator
            pids[:] = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            return len(pids) >= 5

        wait_until(everything_running, 30, "the original and the load to run")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert_all_gone(pids, timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_compare_puts_a_model_and_its_original_side_by_side(tmp_path: Path) -> None:
    needs("node:many_accepts")
    svg, out = tmp_path / "c.svg", tmp_path / "c.json"
    compare_args = ["--workers", "2", "--load", "burst", "--duration", "1.5"]
    compare_args += ["--svg", str(svg), "--json", str(out)]
    p = subprocess.run(
        [*CLI, "compare", "--models", "many_accepts,node:many_accepts", *compare_args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert p.returncode == 0, p.stderr + p.stdout
    ET.fromstring(svg.read_text())
    data = json.loads(out.read_text())
    assert [m["model"] for m in data["models"]] == ["many_accepts", "node:many_accepts"]
    assert all(m["rps"] > 0 for m in data["models"])
    assert len(data["models"][1]["workers"]) >= 2  # the original's workers, seen by pid
    # issue 22: per-worker requests an original counts none of are unknown, never 0
    serving = [w for w in data["models"][1]["workers"] if w["role"] == "worker"]
    assert len(serving) >= 2 and all(w["requests"] is None for w in serving), serving
    assert all(w["requests"] is not None for w in data["models"][0]["workers"])
