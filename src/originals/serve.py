"""`serverscope serve c:single ...`: run one original in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading

from servers.config import ServerConfig

from .launch import Original


def serve(cfg: ServerConfig) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    srv = Original(cfg, stderr=sys.stderr.fileno())
    srv.start()
    try:
        nworkers = len(srv.worker_pids())
        name = srv.config.model
        print(
            f"{name} serving on {srv.url}/  ({nworkers} worker processes, root pid "
            f"{srv.root_pid}); Ctrl-C stops it",
            flush=True,
        )
        while not stop.wait(0.2):
            if not srv.running:
                code = srv.watchdog.returncode if srv.watchdog else None
                print(f"serverscope: {name} exited unexpectedly (code {code})", file=sys.stderr)
                return 1
    finally:
        srv.stop()
    print("stopped", flush=True)
    return 0
