"""The `serverscope` command line: one argparse tree, each subcommand a small function."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import fields

import originals
from export import web as web_cmd
from loadgen import cli as loadgen_cli
from servers import models
from servers.config import ConfigError, ServerConfig, is_loopback_host
from servers.supervisor import ServerError, Supervisor
from serverscope import compare as compare_cmd
from serverscope import demos as demo_cmd
from serverscope import headless as run_cmd
from telemetry import cli as telemetry_cli
from tui import cli as tui_cli

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (not the usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    return value


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model knobs, shared by `serve`, the TUI, `run`, `compare` and `demo`."""
    g = p.add_argument_group("model knobs (a model refuses the ones it does not have)")
    g.add_argument(
        "--workers", type=_positive_int, help="worker processes (event loops for goroutines)"
    )
    g.add_argument(
        "--threads", type=_positive_int, help="threads per process, where the model has them"
    )
    g.add_argument(
        "--backlog",
        type=_positive_int,
        default=511,
        help="listen() backlog, Apache's ListenBacklog (511)",
    )
    g.add_argument("--port", type=_positive_int, default=0, help="port (default: a free one)")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    g.add_argument(
        "--exclusive", action="store_true", help="many_accepts: EPOLLEXCLUSIVE, as nginx"
    )
    g.add_argument(
        "--keepalive-timeout", type=_seconds, default=5.0, help="KeepAliveTimeout, seconds (5)"
    )
    g.add_argument(
        "--max-keepalive-requests",
        type=_positive_int,
        help="MaxKeepAliveRequests (0 = unlimited; default: Apache's 100 for the C and "
        "Apache models, nginx's 1000 for reuseport, unlimited for the Node and Go shapes)",
    )
    g.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        help="Timeout: seconds for a request to arrive whole (60)",
    )
    g.add_argument(
        "--max-cpu-ms",
        type=_seconds,
        default=10_000.0,
        help="per-request CPU ceiling of /work?cpu_ms=, ms; more is answered 400 (10000)",
    )
    g.add_argument("--start-servers", type=_positive_int, help="StartServers")
    g.add_argument("--min-spare", type=_positive_int, help="MinSpareServers / MinSpareThreads")
    g.add_argument("--max-spare", type=_positive_int, help="MaxSpareServers / MaxSpareThreads")
    g.add_argument("--max-workers", type=_positive_int, help="MaxRequestWorkers")
    g.add_argument("--threads-per-child", type=_positive_int, help="ThreadsPerChild")
    g.add_argument("--async-factor", type=_seconds, help="AsyncRequestWorkerFactor")


def config_from_args(model: str, a: argparse.Namespace) -> ServerConfig:
    """The config `add_model_args` describes: its flags' dests are ServerConfig's fields."""
    knobs = {f.name: getattr(a, f.name) for f in fields(ServerConfig) if f.name != "model"}
    return ServerConfig(model=model, **knobs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="serverscope", description="A live terminal lab for server concurrency models."
    )
    tui_cli.add_args(p)
    add_model_args(p)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    s = sub.add_parser(
        "serve",
        help="run one model in the foreground",
        description="Run one model in the foreground until Ctrl-C.",
    )
    s.add_argument("model", nargs="?", help="model name (see --list)")
    s.add_argument("--list", action="store_true", help="list the models and exit")
    add_model_args(s)
    loadgen_cli.add_parser(sub)
    telemetry_cli.add_parser(sub)
    tui_cli.add_replay_parser(sub)
    run_cmd.add_parser(sub, add_model_args)
    compare_cmd.add_parser(sub, add_model_args)
    demo_cmd.add_parser(sub)
    web_cmd.add_parser(sub, add_model_args)
    return p


def cmd_list() -> int:
    specs = models.available()
    width = max(len(s.name) for s in specs)
    for s in specs:
        print(f"{s.name:<{width}}  {s.summary}")
    print("the originals (the seed's own systems, run for real):")
    print("\n".join(originals.list_lines()))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    if a.list:
        return cmd_list()
    if not a.model:
        print(
            "serverscope serve: name a model (serverscope serve --list shows them)", file=sys.stderr
        )
        return EXIT_USAGE
    cfg = config_from_args(a.model, a)
    if originals.is_original(a.model):
        return originals.serve(cfg)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    sup = Supervisor(cfg, stderr=sys.stderr.fileno())
    if not is_loopback_host(sup.config.host):
        print(
            f"serverscope serve: warning: listening on {sup.config.host}, the server is "
            "reachable from other machines (use --host 127.0.0.1 to keep it local)",
            file=sys.stderr,
        )
    sup.start()
    try:
        snap = sup.read()
        nworkers = len(snap.live)
        name, url, root = sup.config.model, sup.url, sup.root_pid
        line = f"{name} serving on {url}/  ({nworkers} workers, root pid {root}); Ctrl-C stops it"
        print(line, flush=True)
        while not stop.wait(0.2):
            if not sup.running:
                code = sup.proc.returncode if sup.proc else None
                print(f"serverscope: {name} exited unexpectedly (code {code})", file=sys.stderr)
                return 1
    finally:
        sup.stop()
    print("stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        if a.command == "serve":
            return cmd_serve(a)
        if a.command == "load":
            return loadgen_cli.run(a)
        if a.command == "attach":
            return telemetry_cli.run(a)
        if a.command is None:
            return tui_cli.run(a, config_from_args)
        if a.command == "replay":
            return tui_cli.run_replay(a)
        if a.command == "run":
            return run_cmd.command(a, config_from_args)
        if a.command == "compare":
            return compare_cmd.command(a, config_from_args)
        if a.command == "demo":
            return demo_cmd.command(a)
        if a.command == "web":
            return web_cmd.command(a, config_from_args)
    except (ConfigError, ServerError) as e:
        print(f"serverscope: {e}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {a.command!r}")
    return EXIT_USAGE
