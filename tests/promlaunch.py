"""A real Prometheus (Debian's `prometheus`) for the tests: on a free loopback port, with a
config and a storage dir of its own in a temp dir, stopped at the end and checked gone by
pid. Use the `prometheus` fixture (`from promlaunch import prometheus` in a test module):

    base = prometheus(config_text, {"fleet-rules.yml": rules_text})  # http://127.0.0.1:PORT
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import assert_all_gone, terminate_all, wait_until
from realservers import free_port

PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="needs the Prometheus server: apt-get install prometheus"
)


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts Prometheus with a config (and files beside it, e.g. rule files); returns its
    base URL once it is ready."""
    procs: list[subprocess.Popen] = []

    def start(config: str, files: dict[str, str] | None = None) -> str:
        assert PROMETHEUS is not None
        where = tmp_path / f"prometheus-{len(procs)}"
        where.mkdir()
        for name, text in (files or {}).items():
            (where / name).write_text(text)
        (where / "prometheus.yml").write_text(config)
        port = free_port()
        log = open(where / "prometheus.log", "wb")  # noqa: SIM115 (the process holds it)
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={where / 'prometheus.yml'}",
                f"--storage.tsdb.path={where / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: ready(base) or proc.poll() is not None, 30, "Prometheus ready")
        assert proc.poll() is None, (where / "prometheus.log").read_text()
        return base

    yield start
    terminate_all(procs)
    assert_all_gone([p.pid for p in procs])
