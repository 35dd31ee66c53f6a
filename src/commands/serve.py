"""`serverscope serve MODEL`: run one model in the foreground until Ctrl-C (or SIGTERM, or
SIGHUP: a closed terminal stops it too); `serve --list` lists the models and the originals."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

import originals
from lab.server import catalogue, model_spec
from plumbing.signals import STOP_SIGNALS, stop_on
from servers.config import is_loopback_host
from servers.supervisor import Supervisor

from .common import EXIT_FAILED, EXIT_OK, add_model_args, config_from_args, fail

PROG = "serverscope serve"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "serve",
        help="run one model in the foreground",
        description="Run one model in the foreground until Ctrl-C.",
    )
    s.add_argument("model", nargs="?", help="model name (see --list)")
    s.add_argument("--list", action="store_true", help="list the models and exit")
    s.add_argument(
        "--no-phases",
        dest="phases",
        action="store_false",
        help="do not time request phases (queue wait, in-server wait, service) into the "
        "scoreboard: for measuring what that accounting costs",
    )
    add_model_args(s)
    return s


def list_models() -> int:
    entries = catalogue()
    mine = [e for e in entries if not e.original]
    width = max(len(e.name) for e in mine)
    for e in mine:
        print(f"{e.name:<{width}}  {e.summary}")
    print("the originals (the seed's own systems, run for real):")
    theirs = [e for e in entries if e.original]
    width = max(len(e.name) for e in theirs)
    for e in theirs:
        have = "present" if e.present else f"MISSING: apt-get install {e.package}"
        print(
            f"{e.name:<{width}}  {e.summary}  [{e.spec.origin}; model {e.twin}; {e.tool}: {have}]"
        )
    return EXIT_OK


def run(a: argparse.Namespace) -> int:
    if a.list:
        return list_models()
    if not a.model:
        return fail(PROG, "name a model (serverscope serve --list shows them)")
    model_spec(a.model)  # an unknown name: one line naming the models and the originals
    cfg = config_from_args(a.model, a)
    if originals.is_original(a.model):
        return originals.serve(cfg)
    with stop_on(threading.Event(), (*STOP_SIGNALS, signal.SIGHUP)) as stop:
        sup = Supervisor(cfg, stderr=sys.stderr.fileno())
        if not is_loopback_host(sup.config.host):
            print(
                f"{PROG}: warning: listening on {sup.config.host}, the server is "
                "reachable from other machines (use --host 127.0.0.1 to keep it local)",
                file=sys.stderr,
            )
        sup.start()
        try:
            code = _serve(sup, stop)
        finally:
            sup.stop()
    if code == EXIT_OK:
        print("stopped", flush=True)
    return code


def _serve(sup: Supervisor, stop: threading.Event) -> int:
    """Say where it serves, then wait for a stop signal or the server's death."""
    snap = sup.read()
    nworkers = len(snap.live)
    name, url, root = sup.config.model, sup.url, sup.root_pid
    line = f"{name} serving on {url}/  ({nworkers} workers, root pid {root}); Ctrl-C stops it"
    print(line, flush=True)
    while not stop.wait(0.2):
        if not sup.running:
            code = sup.exit_code
            return fail("serverscope", f"{name} exited unexpectedly (code {code})", EXIT_FAILED)
    return EXIT_OK
