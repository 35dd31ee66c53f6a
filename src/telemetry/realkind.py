"""What kind of real server a tree is, from its command line and shape: so a diagnosis's
advice can use the server's own knobs ("KeepAliveTimeout", "`listen ... reuseport`");
the mechanism itself is read, not inferred from the kind (telemetry.explain).

Read from what the kernel shows, nothing else: the root's comm and cmdline, how many
threads its children run, whether the workers hold the listening socket (Node's
SCHED_NONE) or only the master does (round robin), how many listeners share a port
(nginx `reuseport`). None when nothing matches: the advice is then in general words.
"""

from __future__ import annotations

from collections.abc import Sequence


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


def detect(
    cmd: Sequence[str],
    *,
    children: int,
    threaded_children: bool,
    workers_hold_listener: bool,
    listeners_per_port: int,
) -> str | None:
    """'apache-prefork', 'apache-threaded' (event or worker MPM), 'nginx',
    'nginx-reuseport', 'node-cluster-none', 'node-cluster-rr', 'node', 'gunicorn-sync',
    'gunicorn-gthread', 'gunicorn-<class>', 'uvicorn', 'python-http.server' or None."""
    if not cmd:
        return None
    exe = cmd[0].rsplit("/", 1)[-1]
    text = " ".join(cmd)
    if exe.startswith(("apache2", "httpd")):
        return "apache-threaded" if threaded_children else "apache-prefork"
    if exe.startswith("nginx"):
        return "nginx-reuseport" if listeners_per_port > 1 else "nginx"
    if exe.startswith("node"):
        if not children:
            return "node"
        return "node-cluster-none" if workers_hold_listener else "node-cluster-rr"
    if "gunicorn" in text:
        klass = _option(cmd, "-k", "--worker-class") or "sync"
        klass = klass.rsplit(".", 1)[-1].lower().removesuffix("worker") or "sync"
        threads = _option(cmd, "--threads")
        if klass == "sync" and threads and threads.isdigit() and int(threads) > 1:
            klass = "gthread"  # gunicorn runs sync with --threads > 1 as gthread
        return f"gunicorn-{klass}"
    if "uvicorn" in text:
        return "uvicorn"
    if "http.server" in text:
        return "python-http.server"
    return None
