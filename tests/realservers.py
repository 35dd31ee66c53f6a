"""Real servers for the attach tests: Apache httpd (prefork, event), nginx (shared socket,
reuseport), HAProxy (nbthread), a Node cluster (SCHED_NONE, round robin), gunicorn (sync,
gthread), uvicorn --workers 2 and Python's single-threaded http.server, each on a free
loopback port with config files of its own in a temp dir (nothing under /etc is read or
touched), stopped with no process left (checked by pid). A server that is not installed
skips its test, naming the Debian or PyPI package.

Use the `real_server` fixture (`from realservers import real_server` in a test module):

    srv = real_server("apache", mpm="prefork", max_workers=8)
    srv.port, srv.root, srv.pids()
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from readers.realtree import descendants

APACHE_MODULES = "/usr/lib/apache2/modules"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


def _which(name: str, *extra: str) -> str | None:
    return shutil.which(name) or next((p for p in extra if os.access(p, os.X_OK)), None)


@dataclass
class RealServer:
    kind: str
    port: int
    root: int  # the master's pid
    tmp: Path
    proc: subprocess.Popen | None = None  # None when the server daemonised itself
    stop_cmd: list[str] | None = None
    seen: set[int] = field(default_factory=set)
    cleanup: list[Path] = field(default_factory=list)  # dirs removed at stop

    def pids(self) -> list[int]:
        """The root and its descendants now."""
        out = [self.root, *descendants(self.root)]
        self.seen.update(out)
        return out

    def children(self) -> list[int]:
        return self.pids()[1:]

    def stop(self, timeout: float = 10.0) -> None:
        self.pids()
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, capture_output=True, timeout=timeout, check=False)
        elif _alive(self.root):
            os.kill(self.root, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in self.seen) and time.monotonic() < deadline:
            if self.proc is not None:
                try:
                    self.proc.wait(0.05)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.05)
        for p in self.seen:  # whatever did not stop in time
            if _alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc is not None:
            self.proc.wait(5)
        for d in self.cleanup:
            shutil.rmtree(d, ignore_errors=True)


def _wait_ready(srv: RealServer, workers: int, timeout: float = 20.0) -> None:
    """Until the port accepts and `workers` children exist (each then holds the socket)."""
    deadline = time.monotonic() + timeout
    while True:
        if srv.proc is not None and srv.proc.poll() is not None:
            log = "".join(p.read_text()[-800:] for p in srv.tmp.glob("*.log"))
            raise RuntimeError(f"{srv.kind} exited with {srv.proc.returncode}: {log}")
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
            up = True
        except OSError:
            up = False
        if up and srv.root and len(srv.children()) >= workers:
            return
        if time.monotonic() > deadline:
            log = "".join(p.read_text()[-800:] for p in srv.tmp.glob("*.log"))
            raise RuntimeError(f"{srv.kind} not ready on port {srv.port} in {timeout} s: {log}")
        time.sleep(0.05)


# -- Apache httpd (Debian's apache2) --------------------------------------------------


def apache_docs() -> Path:
    """The document root: the children run as www-data (or nobody) and pytest's temp dirs
    are 0700, so it goes in a world-readable temp dir of its own (removed at stop)."""
    docs = Path(tempfile.mkdtemp(prefix="serverscope-htdocs-"))
    (docs / "index.html").write_text("ok\n")
    for p in (docs, docs / "index.html"):
        p.chmod(0o755)
    return docs


def prefork_sizing(start: int, max_workers: int) -> str:
    return f"""
        StartServers {start}
        MinSpareServers 1
        MaxSpareServers {max_workers}
        ServerLimit {max_workers}
        MaxRequestWorkers {max_workers}
        MaxConnectionsPerChild 0
    """


def apache_config(
    tmp: Path, port: int, docs: Path, mpm: str, keepalive_timeout: int, sizing: str
) -> str:
    """httpd.conf of a test's own Apache: loopback port, mod_status with ExtendedStatus at
    /server-status, everything under `tmp`; `sizing` the MPM's directives."""
    user = "www-data" if _has_user("www-data") else "nobody"
    return textwrap.dedent(
        f"""
        ServerRoot "{tmp}"
        ServerName 127.0.0.1
        Listen 127.0.0.1:{port}
        PidFile "{tmp}/httpd.pid"
        ErrorLog "{tmp}/error.log"
        LogLevel warn
        DefaultRuntimeDir "{tmp}"
        Mutex file:{tmp} default
        User {user}
        Group {"www-data" if user == "www-data" else "nogroup"}
        LoadModule mpm_{mpm}_module {APACHE_MODULES}/mod_mpm_{mpm}.so
        LoadModule authz_core_module {APACHE_MODULES}/mod_authz_core.so
        LoadModule status_module {APACHE_MODULES}/mod_status.so
        LoadModule dir_module {APACHE_MODULES}/mod_dir.so
        DocumentRoot "{docs}"
        DirectoryIndex index.html
        <Directory "{docs}">
            Require all granted
        </Directory>
        <Location "/server-status">
            SetHandler server-status
            Require all granted
        </Location>
        ExtendedStatus On
        KeepAlive On
        KeepAliveTimeout {keepalive_timeout}
        MaxKeepAliveRequests 0
        """
    ) + textwrap.dedent(sizing)


def apache(
    tmp: Path,
    *,
    mpm: str = "prefork",
    max_workers: int = 8,
    start: int = 2,
    threads_per_child: int = 4,
    keepalive_timeout: int = 5,
) -> RealServer:
    exe = _which("apache2", "/usr/sbin/apache2")
    if exe is None or not os.path.exists(f"{APACHE_MODULES}/mod_mpm_{mpm}.so"):
        pytest.skip("Apache httpd not installed (Debian package apache2)")
    port = free_port()
    docs = apache_docs()
    if mpm == "prefork":
        sizing = prefork_sizing(start, max_workers)
    else:
        children = max(1, max_workers // threads_per_child)
        sizing = f"""
            StartServers {children}
            ServerLimit {children}
            ThreadLimit {threads_per_child}
            ThreadsPerChild {threads_per_child}
            MinSpareThreads 1
            MaxSpareThreads {max_workers}
            MaxRequestWorkers {children * threads_per_child}
            MaxConnectionsPerChild 0
        """
    conf = tmp / "httpd.conf"
    conf.write_text(apache_config(tmp, port, docs, mpm, keepalive_timeout, sizing))
    env = {k: v for k, v in os.environ.items() if not k.startswith("APACHE_")}
    # httpd signals its whole process group on stop: its own session keeps pytest out of it
    r = subprocess.run(
        [exe, "-f", str(conf), "-k", "start"],
        capture_output=True,
        text=True,
        env=env,
        start_new_session=True,
        timeout=30,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"apache2 -k start failed: {r.stderr.strip()}")
    pidfile = tmp / "httpd.pid"
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError("apache2 wrote no pid file")
        time.sleep(0.05)
    srv = RealServer(
        "apache",
        port,
        int(pidfile.read_text()),
        tmp,
        stop_cmd=[exe, "-f", str(conf), "-k", "stop"],
        cleanup=[docs],
    )
    _wait_ready(srv, start if mpm == "prefork" else max(1, max_workers // threads_per_child))
    return srv


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# -- nginx ------------------------------------------------------------------------------


def nginx_config(
    tmp: Path, port: int, workers: int, *, reuseport: bool = False, user: str | None = None
) -> str:
    """nginx.conf of a test's own nginx: `workers` workers answering "ok" on a loopback
    port (backlog 128), every path under `tmp`; `user`: its workers' user."""
    temps = "\n".join(
        f"    {k}_temp_path {tmp}/{k}_temp;"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        (f"user {user};\n" if user else "")
        + f"""daemon off;
master_process on;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
{temps}
    keepalive_timeout 30s;
    server {{
        listen 127.0.0.1:{port}{" reuseport" if reuseport else ""} backlog=128;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""
    )


def nginx(
    tmp: Path,
    *,
    workers: int = 2,
    reuseport: bool = False,
    site: bool = False,
    user: str | None = None,
) -> RealServer:
    """`site`: started as `nginx -e LOG -c DIR/nginx.conf -p DIR` (DIR named "site"), the
    way a site's own nginx often is: its rewritten argv ends in "/site". `user`: its
    workers' user (`user` directive; the master runs as root)."""
    exe = _which("nginx", "/usr/sbin/nginx")
    if exe is None:
        pytest.skip("nginx not installed (Debian package nginx)")
    port = free_port()
    if site:
        tmp = tmp / "site"
        tmp.mkdir()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_config(tmp, port, workers, reuseport=reuseport, user=user))
    args = ["-e", f"{tmp}/error.log", "-c", str(conf), "-p", str(tmp)]
    proc = subprocess.Popen(
        [exe, *(args if site else ["-p", str(tmp), "-e", f"{tmp}/error.log", "-c", str(conf)])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    srv = RealServer("nginx", port, proc.pid, tmp, proc=proc)
    try:
        _wait_ready(srv, workers)
    except Exception:
        srv.stop()
        raise
    return srv


# -- HAProxy (Debian's haproxy) --------------------------------------------------------


def haproxy(tmp: Path, *, threads: int = 2) -> RealServer:
    """One process, `nbthread` threads, each with its own epoll set holding the listener
    (threads as workers); it answers every request itself (no backend)."""
    exe = _which("haproxy", "/usr/sbin/haproxy")
    if exe is None:
        pytest.skip("haproxy not installed (Debian package haproxy)")
    port = free_port()
    conf = tmp / "haproxy.cfg"
    conf.write_text(
        f"""global
    nbthread {threads}
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string ok
"""
    )
    log = open(tmp / "haproxy.log", "w")  # noqa: SIM115 - closed when the process is
    # -db: stay in the foreground, no master process (one process, `threads` threads)
    proc = subprocess.Popen(
        [exe, "-db", "-f", str(conf)], stdout=log, stderr=log, start_new_session=True
    )
    log.close()
    srv = RealServer("haproxy", port, proc.pid, tmp, proc=proc)
    try:
        _wait_ready(srv, 0)
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{proc.pid}/task")) < threads:
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start {threads} threads")
            time.sleep(0.05)
    except Exception:
        srv.stop()
        raise
    return srv


# -- Node cluster -----------------------------------------------------------------------

NODE_CLUSTER = """
const cluster = require('cluster');
const http = require('http');
const [port, n, sched] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
cluster.schedulingPolicy = sched === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
if (cluster.isPrimary) {
  for (let i = 0; i < n; i++) cluster.fork();
  let listening = 0;  // round robin: a worker gets connections once the master knows it
  cluster.on('listening', () => { if (++listening === n) console.log('ready'); });
  process.on('SIGTERM', () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  http.createServer((req, res) => res.end('ok\\n')).listen(port, '127.0.0.1');
}
"""


def node(tmp: Path, *, workers: int = 2, sched: str = "none") -> RealServer:
    exe = shutil.which("node") or shutil.which("nodejs")
    if exe is None:
        pytest.skip("node not installed (Debian package nodejs)")
    port = free_port()
    script = tmp / "cluster.js"
    script.write_text(NODE_CLUSTER)
    log = open(tmp / "node.log", "w")  # noqa: SIM115 - closed when the process is
    proc = subprocess.Popen(
        [exe, str(script), str(port), str(workers), sched],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    srv = RealServer(f"node-{sched}", port, proc.pid, tmp, proc=proc)
    try:
        _wait_ready(srv, workers)
        deadline = time.monotonic() + 10
        while "ready" not in (tmp / "node.log").read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("node workers did not all listen")
            time.sleep(0.05)
        if sched == "none":  # every worker has its own copy of the listener
            deadline = time.monotonic() + 10
            while sum(1 for p in srv.children() if _holds_listener(p, port)) < workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("node workers did not all listen")
                time.sleep(0.05)
    except Exception:
        srv.stop()
        raise
    return srv


def _holds_listener(pid: int, port: int) -> bool:
    from readers.sockdiag import SockDiag

    with SockDiag() as d:
        inodes = {x.inode for x in d.listeners([port])}
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{name}")
            if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                return True
    except OSError:
        pass
    return False


# -- gunicorn and uvicorn (PyPI) ---------------------------------------------------------

WSGI_APP = """
import time


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":  # /sleep?S: a handler stuck S seconds
        time.sleep(float(environ.get("QUERY_STRING") or 12))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\\n"]
"""
WSGI_SLEEP_LINE = 7  # the line of time.sleep in wsgiapp.py

ASGI_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"ok\\n"})
"""


def _need_pypi(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} not installed (PyPI package {name}: pip install -e '.[real]')")


def gunicorn(
    tmp: Path,
    *,
    worker_class: str = "sync",
    workers: int = 2,
    threads: int = 4,
    keepalive: int | None = None,
) -> RealServer:
    """`keepalive`: seconds an idle keep-alive connection is held (gunicorn's own default:
    2 s, which a test holding its clients over an attach can outlast on a busy machine)."""
    _need_pypi("gunicorn")
    port = free_port()
    (tmp / "wsgiapp.py").write_text(WSGI_APP)
    log = open(tmp / "gunicorn.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    cmd += ["-k", worker_class, "--chdir", str(tmp), "--timeout", "30"]
    if worker_class == "gthread":
        cmd += ["--threads", str(threads)]
    if keepalive is not None:
        cmd += ["--keep-alive", str(keepalive)]
    proc = subprocess.Popen([*cmd, "wsgiapp:app"], stdout=log, stderr=log, start_new_session=True)
    log.close()
    srv = RealServer(f"gunicorn-{worker_class}", port, proc.pid, tmp, proc=proc)
    try:
        _wait_ready(srv, workers)
    except Exception:
        srv.stop()
        raise
    return srv


def uvicorn(tmp: Path, *, workers: int = 2) -> RealServer:
    _need_pypi("uvicorn")
    port = free_port()
    (tmp / "asgiapp.py").write_text(ASGI_APP)
    log = open(tmp / "uvicorn.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(workers), "--app-dir", str(tmp), "--log-level", "warning"]
    proc = subprocess.Popen([*cmd, "asgiapp:app"], stdout=log, stderr=log, start_new_session=True)
    log.close()
    srv = RealServer("uvicorn", port, proc.pid, tmp, proc=proc)
    try:
        _wait_ready(srv, workers + 1)  # the workers and multiprocessing's resource_tracker
    except Exception:
        srv.stop()
        raise
    return srv


# -- Python's http.server (one thread: HTTPServer, not `python -m http.server`'s threads) --

HTTP_SERVER = (
    "import http.server as h, sys; "
    "h.HTTPServer(('127.0.0.1', int(sys.argv[1])), h.SimpleHTTPRequestHandler).serve_forever()"
)


def http_server(tmp: Path) -> RealServer:
    """One process, one thread: a connection it is reading pins the whole server."""
    port = free_port()
    log = open(tmp / "http_server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-c", HTTP_SERVER, str(port)],
        cwd=tmp,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    srv = RealServer("http.server", port, proc.pid, tmp, proc=proc)
    try:
        _wait_ready(srv, 0)
    except Exception:
        srv.stop()
        raise
    return srv


STARTERS: dict[str, Callable[..., RealServer]] = {
    "apache": apache,
    "nginx": nginx,
    "haproxy": haproxy,
    "node": node,
    "gunicorn": gunicorn,
    "uvicorn": uvicorn,
    "http.server": http_server,
}


@pytest.fixture
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RealServer]]:
    """Start real servers; each is stopped at the end and all its pids checked gone."""
    started: list[RealServer] = []

    def start(kind: str, **kw: object) -> RealServer:
        srv = STARTERS[kind](tmp_path_factory.mktemp(kind), **kw)
        started.append(srv)
        srv.pids()
        return srv

    yield start
    left = []
    for srv in started:
        srv.stop()
        left += [p for p in srv.seen if _alive(p)]
    assert not left, f"processes left running: {left}"
