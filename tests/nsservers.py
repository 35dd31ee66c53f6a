"""Real servers in network and pid namespaces of their own, as a container runs them:
`unshare --net --pid --fork --mount-proc`, loopback up, the server exec'd as pid 1 of
its pid namespace. Seen from the host they are a process tree like any other; their
sockets, ports and /proc/net counters are the namespace's. Ground truth is `ss` run
inside the namespace (`nsenter -t PID -n`: the network namespace only, so `ss -p`
reads the host's /proc and prints host pids, the ones attach shows).

Use the `ns_server` fixture: `srv = ns_server("nginx", workers=2)` (or "gunicorn",
"apache", "lab" for a lab model under `serverscope serve`); `srv.netns` is its
/proc/PID/ns/net, `srv.connect()` a client socket made inside it, `srv.ss(...)` runs ss
there. Each server is stopped at the end (its pid 1 is told to stop: the kernel ends
every process of the namespace with it) and every pid seen is checked gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from readers.netns import at as netns_at
from readers.realtree import descendants
from realservers import (
    APACHE_MODULES,
    WSGI_APP,
    RealServer,
    _alive,
    _need_pypi,
    _which,
    apache_config,
    apache_docs,
    nginx_config,
    prefork_sizing,
)

UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--"]
LO_UP = 'ip link set lo up && exec "$@"'


def why_not() -> str | None:
    """Why no namespace can be made here (None: it can)."""
    for tool, package in (("unshare", "util-linux"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian package {package})"
    if shutil.which("ip") is None or shutil.which("ss") is None:
        return "needs ip and ss (Debian package iproute2)"
    if os.geteuid() != 0:
        return "making pid and network namespaces and entering them needs root"
    return None


class NsServer(RealServer):
    @property
    def netns(self) -> str:
        return f"/proc/{self.root}/ns/net"

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A client connection to the server made inside its namespace."""
        return netns_at(self.netns).run(
            lambda: socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        )

    def ss(self, *args: str) -> list[str]:
        """`ss -H ARGS` inside the server's network namespace, its lines."""
        out = subprocess.run(
            ["nsenter", "-t", str(self.root), "-n", "ss", "-H", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.splitlines()

    def proc_net(self, name: str) -> str:
        """/proc/net/NAME as a process inside the namespace reads it."""
        out = subprocess.run(
            ["nsenter", "-t", str(self.root), "-n", "cat", f"/proc/net/{name}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout


def _start(kind: str, tmp: Path, port: int, argv: list[str], workers: int) -> NsServer:
    log = open(tmp / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [*UNSHARE, "sh", "-c", LO_UP, "sh", *argv],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    srv = NsServer(kind, port, 0, tmp, proc=proc)
    srv.seen.add(proc.pid)
    deadline = time.monotonic() + 30
    try:
        while True:  # unshare forks once: its child is the namespace's pid 1, the server
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited: {(tmp / 'server.log').read_text()[-800:]}")
            kids = descendants(proc.pid)
            if kids and not srv.root:
                srv.root = kids[0]
            if srv.root and len(srv.children()) >= workers and _listens(srv):
                return srv
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} not ready: {(tmp / 'server.log').read_text()[-800:]}")
            time.sleep(0.05)
    except Exception:
        srv.stop()
        raise


def _listens(srv: NsServer) -> bool:
    try:
        return any(f":{srv.port} " in ln for ln in srv.ss("-ltn"))
    except subprocess.CalledProcessError:
        return False  # the namespace is not made yet


def nginx(tmp: Path, *, workers: int = 2, port: int = 8000) -> NsServer:
    exe = _which("nginx", "/usr/sbin/nginx")
    if exe is None:
        pytest.skip("nginx not installed (Debian package nginx)")
    (tmp / "nginx.conf").write_text(nginx_config(tmp, port, workers))
    argv = [exe, "-p", str(tmp), "-e", f"{tmp}/error.log", "-c", str(tmp / "nginx.conf")]
    return _start("nginx", tmp, port, argv, workers)


def gunicorn(tmp: Path, *, workers: int = 2, port: int = 8000, backlog: int = 16) -> NsServer:
    _need_pypi("gunicorn")
    (tmp / "wsgiapp.py").write_text(WSGI_APP)
    argv = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    argv += ["--backlog", str(backlog), "--chdir", str(tmp), "--timeout", "30", "wsgiapp:app"]
    return _start("gunicorn-sync", tmp, port, argv, workers)


def apache(
    tmp: Path, *, workers: int = 3, port: int = 8000, keepalive_timeout: int = 30
) -> NsServer:
    """Apache prefork in the foreground (pid 1), `workers` children, mod_status with
    ExtendedStatus at /server-status."""
    exe = _which("apache2", "/usr/sbin/apache2")
    mods = APACHE_MODULES
    if exe is None or not os.path.exists(f"{mods}/mod_mpm_prefork.so"):
        pytest.skip("Apache httpd not installed (Debian package apache2)")
    docs = apache_docs()
    sizing = prefork_sizing(workers, workers)
    conf = apache_config(tmp, port, docs, "prefork", keepalive_timeout, sizing)
    (tmp / "httpd.conf").write_text(conf)
    env = [f"{k}={v}" for k, v in os.environ.items() if not k.startswith("APACHE_")]
    argv = ["env", "-i", *env, exe, "-f", str(tmp / "httpd.conf"), "-DFOREGROUND"]
    srv = _start("apache", tmp, port, argv, workers)
    srv.cleanup.append(docs)
    return srv


def lab_model(
    tmp: Path, *, model: str = "many_accepts", workers: int = 4, port: int = 8000, **knobs: object
) -> NsServer:
    """One of the lab's models run by `serverscope serve` (pid 1, its Supervisor), with
    `knobs` as its flags (exclusive=True: --exclusive); the model's root is pid 1's child."""
    argv = [sys.executable, "-m", "serverscope", "serve", model, "--port", str(port)]
    argv += ["--workers", str(workers)]
    for name, value in knobs.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return _start(model, tmp, port, argv, workers + 1)  # the model's root, its workers


STARTERS: dict[str, Callable[..., NsServer]] = {
    "nginx": nginx,
    "gunicorn": gunicorn,
    "apache": apache,
    "lab": lab_model,
}


@pytest.fixture
def ns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NsServer]]:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    started: list[NsServer] = []

    def start(kind: str, **kw: object) -> NsServer:
        srv = STARTERS[kind](tmp_path_factory.mktemp(f"ns-{kind}"), **kw)
        started.append(srv)
        return srv

    yield start
    left = []
    for srv in started:
        srv.stop()
        left += [p for p in srv.seen if _alive(p)]
    assert not left, f"processes left running: {left}"
