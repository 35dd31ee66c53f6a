"""What kind of real server a tree is, from its executable, command line and shape: so a
diagnosis can name the mechanism and the fix ("prefork pinned by keep-alive: shorter
KeepAliveTimeout or the event MPM") instead of only the phenomenon.

Read from what the kernel shows, nothing else: the root's executable (/proc/PID/exe,
which needs the right to inspect it; else its comm, which anyone may read), then its
command line for interpreters (`python -m gunicorn`, `node script.js`): nginx rewrites
its argv into one string ("nginx: master process /usr/sbin/nginx -c ..."), so the last
`/`-part of argv named `nginx -c /srv/site/nginx.conf -p /srv/site` "site". Then how many
threads its children run, whether the workers hold the listening socket (Node's
SCHED_NONE) or only the master does (round robin), how many listeners share a port
(nginx `reuseport`). None when nothing matches: the diagnoses then say no fix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .snapshot import Hold

# mechanism and fix per real-server kind (ModelInfo.server, set when attached: see
# detect below); the lab's own models have no `server` and get no suffix
_SHARED = (
    "; shared socket, epoll wakes the most recent waiter (LIFO): use reuseport, "
    "EPOLLEXCLUSIVE rotation or round robin"
)
SKEW_FIXES: dict[str, str] = {
    "nginx": _SHARED.replace("use reuseport", "use `listen ... reuseport`"),
    "node-cluster-none": _SHARED.replace("or round robin", "or cluster's round robin (SCHED_RR)"),
    "uvicorn": _SHARED,
    "gunicorn-gthread": _SHARED,
    "apache-threaded": _SHARED,
}
# what pins a starved worker (snapshot.Hold; None: not read) -> the mechanism and its fix
_BUFFER = "a proxy that buffers whole requests (nginx) in front"
STARVATION_FIXES: dict[str, dict[Hold | None, str]] = {
    "apache-prefork": {
        Hold.KEEPALIVE: "prefork children pinned by idle keep-alive connections: shorten "
        "KeepAliveTimeout or use the event MPM",
        Hold.PARTIAL: "prefork children pinned by requests that stopped half-way: shorten "
        f"RequestReadTimeout (mod_reqtimeout) or put {_BUFFER}",
        Hold.SILENT: "prefork children pinned by clients that sent nothing: shorten "
        f"RequestReadTimeout (mod_reqtimeout) or put {_BUFFER}",
        None: "prefork children pinned by idle connections: shorten KeepAliveTimeout "
        "(keep-alive) and RequestReadTimeout (stalled requests), or use the event MPM",
    },
    "gunicorn-sync": {
        Hold.PARTIAL: "gunicorn sync workers pinned by requests that stopped half-way: put "
        f"{_BUFFER}, or use -k gthread (or an async worker); --timeout bounds each",
        Hold.SILENT: "gunicorn sync workers pinned by clients that send nothing: put "
        f"{_BUFFER}, or use -k gthread (or an async worker); --timeout bounds each",
        None: "gunicorn sync workers pinned by clients that send nothing: use -k gthread "
        "(or an async worker) or a buffering proxy (nginx) in front",
    },
    "python-http.server": {
        Hold.PARTIAL: "http.server's one thread pinned by a request that stopped half-way: "
        f"set the handler's `timeout`, serve with ThreadingHTTPServer, or put {_BUFFER}",
        Hold.SILENT: "http.server's one thread pinned by a client that sent nothing: set "
        f"the handler's `timeout`, serve with ThreadingHTTPServer, or put {_BUFFER}",
        Hold.KEEPALIVE: "http.server's one thread pinned by an idle keep-alive connection: "
        "set the handler's `timeout` or serve with ThreadingHTTPServer",
    },
}
# any other real server, by what pins it
_HOLD_FIXES: dict[Hold, str] = {
    Hold.KEEPALIVE: "workers pinned by idle keep-alive connections: shorten the keep-alive timeout",
    Hold.PARTIAL: "workers pinned by requests that stopped half-way: a request (header) "
    f"read timeout, or {_BUFFER}",
    Hold.SILENT: "workers pinned by clients that sent nothing: a request read timeout, or "
    f"{_BUFFER}",
}


def starvation_fix(server: str | None, hold: Hold | None) -> str:
    """'; <mechanism>: <fix>' for a starved real server of kind `server` whose workers
    are pinned by `hold`; '' for the lab's own models (no `server`) or nothing to say."""
    if server is None:
        return ""
    fixes = STARVATION_FIXES.get(server, {})
    text = fixes.get(hold) or (_HOLD_FIXES.get(hold) if hold is not None else None)
    return f"; {text}" if text else ""


INTERPRETERS = ("python", "pypy", "perl", "ruby", "java", "php", "bash", "sh")


def executable(pid: int) -> str | None:
    """The basename of the file the process runs (/proc/PID/exe; None when it is not
    ours to inspect, or gone)."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        return None


def comm(pid: int) -> str | None:
    """The kernel's name for the process (/proc/PID/comm, readable by anyone)."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().decode(errors="replace").strip() or None
    except OSError:
        return None


def program(exe: str | None, name: str | None, cmd: Sequence[str]) -> str | None:
    """What to call the server: its executable, else its comm, else argv's first word
    (nginx's "nginx: master process ..." reads "nginx")."""
    first = cmd[0].split()[0].rstrip(":") if cmd and cmd[0].split() else ""
    return exe or name or (os.path.basename(first) if first else None)


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _option(cmd: Sequence[str], *names: str) -> str | None:
    """The value of `-k X`, `--worker-class X` or `--worker-class=X`."""
    for i, arg in enumerate(cmd):
        for n in names:
            if arg == n and i + 1 < len(cmd):
                return cmd[i + 1]
            if n.startswith("--") and arg.startswith(n + "="):
                return arg.split("=", 1)[1]
    return None


def _kind_of_name(
    name: str, children: int, threaded: bool, hold: bool, per_port: int
) -> str | None:
    if name.startswith(("apache2", "httpd")):
        return "apache-threaded" if threaded else "apache-prefork"
    if name.startswith("nginx"):
        return "nginx-reuseport" if per_port > 1 else "nginx"
    if name in ("node", "nodejs"):
        if not children:
            return "node"
        return "node-cluster-none" if hold else "node-cluster-rr"
    return None


def detect(
    cmd: Sequence[str],
    *,
    children: int,
    threaded_children: bool,
    workers_hold_listener: bool,
    listeners_per_port: int,
    exe: str | None = None,
    name: str | None = None,
) -> str | None:
    """'apache-prefork', 'apache-threaded' (event or worker MPM), 'nginx',
    'nginx-reuseport', 'node-cluster-none', 'node-cluster-rr', 'node', 'gunicorn-sync',
    'gunicorn-gthread', 'gunicorn-<class>', 'uvicorn', 'python-http.server' or None.
    `exe` (the executable's basename) and `name` (comm) are read first; argv only for
    an interpreter's program (or a script's: a `gunicorn` script's exe is python), or
    when neither could be read."""
    shape = (children, threaded_children, workers_hold_listener, listeners_per_port)
    for n in (exe, name):
        if n and not n.startswith(INTERPRETERS):
            kind = _kind_of_name(n, *shape)
            if kind is not None:
                return kind
    if exe and not exe.startswith(INTERPRETERS):  # a program of its own, not one we know
        return _interpreted(cmd, exe)
    first = cmd[0].split()[0].rstrip(":") if cmd and cmd[0].split() else ""
    if not exe and not name and first:  # nothing but argv to go by
        kind = _kind_of_name(os.path.basename(first), *shape)
        if kind is not None:
            return kind
    return _interpreted(cmd, name)


def _interpreted(cmd: Sequence[str], name: str | None) -> str | None:
    """A Python server told by its command line (`python -m gunicorn`, a `gunicorn`
    script, `uvicorn`, `http.server`) or its program's `name`."""
    text = " ".join(cmd)
    if "gunicorn" in text or (name or "").startswith("gunicorn"):
        klass = _option(cmd, "-k", "--worker-class") or "sync"
        klass = klass.rsplit(".", 1)[-1].lower().removesuffix("worker") or "sync"
        threads = _option(cmd, "--threads")
        if klass == "sync" and threads and threads.isdigit() and int(threads) > 1:
            klass = "gthread"  # gunicorn runs sync with --threads > 1 as gthread
        return f"gunicorn-{klass}"
    if "uvicorn" in text or (name or "").startswith("uvicorn"):
        return "uvicorn"
    if "http.server" in text:
        return "python-http.server"
    return None
