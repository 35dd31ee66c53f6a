"""What kind of real server a tree is, from its executable, command line and shape: so a
diagnosis's advice can use the server's own knobs ("KeepAliveTimeout", "`listen ...
reuseport`"); the mechanism itself is read, not inferred from the kind (judging.explain).

Read from what the kernel shows, nothing else: the root's executable (/proc/PID/exe,
which needs the right to inspect it; else its comm, which anyone may read), then its
command line for interpreters (`python -m gunicorn`, `node script.js`): nginx rewrites
its argv into one string ("nginx: master process /usr/sbin/nginx -c ..."), so the last
`/`-part of argv named `nginx -c /srv/site/nginx.conf -p /srv/site` "site". Then how many
threads its children run, whether the workers hold the listening socket (Node's
SCHED_NONE) or only the master does (round robin), how many listeners share a port
(nginx `reuseport`). None when nothing matches: the advice is then in general words.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

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
