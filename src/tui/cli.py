"""The TUI's part of the `serverscope` command line (registered by `serverscope.cli`).

    serverscope [--model M] [--load PRESET] [--clients N] [--rate R] [--duration S]
                [--record FILE] [model knobs]          the live lab (default: many_accepts, burst)
    serverscope replay FILE                            a recording, with pause and seek
    serverscope demo NAME                              a guided demo (when no one else owns `demo`)

Textual is imported only when a TUI actually opens, so other subcommands start fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from loadgen.levels import PRESETS, LoadError, LoadLevel, preset
from servers import models
from servers.config import ConfigError, ServerConfig
from serverscope.session import LIVE_DURATION

EXIT_USAGE = 2
NO_LOAD = "none"


def _fail(message: str) -> int:
    print(f"serverscope: {message}", file=sys.stderr)
    return EXIT_USAGE


def add_args(p: argparse.ArgumentParser) -> None:
    """Top-level options: what `serverscope` with no subcommand opens."""
    g = p.add_argument_group("the live lab (serverscope with no subcommand)")
    g.add_argument("--model", default="many_accepts", help="model to start (default many_accepts)")
    g.add_argument(
        "--load",
        default="burst",
        metavar="PRESET",
        help=f"load preset: {', '.join(PRESETS)}, or {NO_LOAD} (default burst)",
    )
    g.add_argument("--clients", type=int, help="clients of the load (default: the preset's)")
    g.add_argument("--rate", type=float, help="open loop at this many req/s in all")
    g.add_argument(
        "--duration",
        type=float,
        help=f"seconds each load runs (default {LIVE_DURATION:g}; g runs it again)",
    )
    g.add_argument("--record", metavar="FILE", help="record every snapshot to FILE (JSONL)")


def add_replay_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "replay",
        help="replay a recording in the TUI",
        description="Open a recording (serverscope --record FILE) in the TUI, "
        "with pause (space) and seek ([ and ], comma and full stop).",
    )
    p.add_argument("file", help="a recording made with --record")
    return p


def add_demo_parser(sub: Any) -> argparse.ArgumentParser | None:
    """Register `demo NAME` unless another module already has (it then owns the command)."""
    if "demo" in sub.choices:
        return None
    p = sub.add_parser(
        "demo",
        help="play a guided demo in the TUI",
        description="Play a guided scenario: each step starts a model and a load, "
        "injects a fault and says what to watch. n: next step, N: back, q: quit.",
    )
    p.add_argument("name", nargs="?", help="scenario name (see --list)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.set_defaults(tui_demo=True)
    return p


def level_from_args(a: argparse.Namespace) -> LoadLevel | None:
    if a.load == NO_LOAD:
        return None
    level = preset(a.load).with_(duration=a.duration or LIVE_DURATION)
    if a.clients is not None:
        level = level.with_(clients=a.clients)
    if a.rate is not None:
        level = level.with_(rate=a.rate)
    return level.check()


def check_config(cfg: ServerConfig) -> ServerConfig:
    try:
        spec = models.spec(cfg.model)
    except ModuleNotFoundError:
        raise ConfigError(f"model {cfg.model} is not built yet") from None
    spec.resolve(cfg)
    return cfg


def run(a: argparse.Namespace, config_from_args: Any) -> int:
    """`serverscope` with no subcommand: the live lab."""
    try:
        cfg = check_config(config_from_args(a.model, a))
        level = level_from_args(a)
    except (ConfigError, LoadError) as e:
        return _fail(str(e))
    from .app import run_live

    code, error = run_live(cfg, level, record=a.record, load_duration=a.duration or LIVE_DURATION)
    if error:
        return _fail(error)
    return code


def run_replay(a: argparse.Namespace) -> int:
    from telemetry.recording import read_recording
    from telemetry.snapshot import FormatError

    try:
        snaps = list(read_recording(a.file))
    except (OSError, FormatError) as e:
        return _fail(str(e) if isinstance(e, FormatError) else f"{a.file}: {e.strerror or e}")
    if not snaps:
        return _fail(f"{a.file}: the recording holds no snapshots")
    from .app import run_replay as replay

    return replay(snaps, a.file)


def run_demo(a: argparse.Namespace) -> int:
    from serverscope.demos import SCENARIOS

    if a.list or not a.name:
        if not SCENARIOS:
            return _fail("no demo scenarios yet")
        width = max(len(n) for n in SCENARIOS)
        for name, sc in SCENARIOS.items():
            print(f"{name:<{width}}  {sc.summary}")
        return 0 if a.list else EXIT_USAGE
    scenario = SCENARIOS.get(a.name)
    if scenario is None:
        choices = ", ".join(SCENARIOS) or "none yet"
        return _fail(f"unknown demo {a.name!r}; choose from: {choices}")
    from .app import run_demo as play

    code, error = play(scenario)
    return _fail(error) if error else code
