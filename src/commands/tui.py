"""`serverscope` with no subcommand: the live lab in the TUI.

    serverscope [--model M] [--load PRESET] [--clients N] [--rate R] [--duration S]
                [--record FILE] [model knobs]          the live lab (default: many_accepts
                                                       with EPOLLEXCLUSIVE, steady at 50/s)

(`serverscope replay FILE` is `commands.replay`.)

Textual is imported only when a TUI actually opens, so other subcommands start fast.
"""

from __future__ import annotations

import argparse

from lab.server import model_spec
from lab.session import LIVE_DURATION
from loadgen.levels import PRESETS, LoadError, LoadLevel, preset
from servers.config import ConfigError, ServerConfig

from . import export
from .common import config_from_args, fail, seconds

NO_LOAD = "none"
# `serverscope` with no arguments must show its phenomenon at once, every time (issue 12:
# six launches of the old default, many_accepts under `burst`, gave top accept shares of
# 45% to 100%). The burst's 20 clients arriving at the same instant wake every worker, and
# on 2 cores two of them accept side by side (measured, 10 headless TUI launches: one at
# 67%; with EPOLLEXCLUSIVE, 62% and 67% in 6). Clients arriving one after another (the
# `steady` preset ramps its 20 over 2 s) into EPOLLEXCLUSIVE's LIFO wake-up, as nginx
# uses it, go to one worker: 10 of 10 launches at 95-100% (bench/default_launch.py), but
# 9 of 10 (one 57%) while other jobs kept the load average near 9: a worker busy serving
# is not waiting, so the next connection goes to another. At 50 req/s instead of the
# preset's 200 the serving worker is back in epoll_wait sooner: 10 of 10 at 100% then.
DEFAULT_MODEL = "many_accepts"
DEFAULT_LOAD = "steady"
DEFAULT_RATE = 50.0  # req/s, in all; applied only when neither --load nor --rate is given
DEFAULT_KNOBS = {"exclusive": True}  # applied only when --model is not given


def _fail(message: str) -> int:
    return fail("serverscope", message)


def add_args(p: argparse.ArgumentParser) -> None:
    """Top-level options: what `serverscope` with no subcommand opens."""
    g = p.add_argument_group("the live lab (serverscope with no subcommand)")
    g.add_argument(
        "--model",
        help=f"model to start (default {DEFAULT_MODEL} with EPOLLEXCLUSIVE, as nginx: "
        "--model many_accepts gives it without)",
    )
    g.add_argument(
        "--load",
        metavar="PRESET",
        help=f"load preset: {', '.join(PRESETS)}, or {NO_LOAD} (default {DEFAULT_LOAD})",
    )
    g.add_argument("--clients", type=int, help="clients of the load (default: the preset's)")
    g.add_argument("--rate", type=float, help="open loop at this many req/s in all")
    g.add_argument(
        "--duration",
        type=seconds(at_least=0),
        help=f"seconds each load runs (default {LIVE_DURATION:g}; g runs it again)",
    )
    g.add_argument("--record", metavar="FILE", help="record every snapshot to FILE (JSONL)")
    export.add_args(g)


def level_from_args(a: argparse.Namespace) -> LoadLevel | None:
    load = a.load or DEFAULT_LOAD
    if load == NO_LOAD:
        return None
    level = preset(load).with_(duration=a.duration or LIVE_DURATION)
    if a.clients is not None:
        level = level.with_(clients=a.clients)
    if a.rate is not None:
        level = level.with_(rate=a.rate)
    elif a.load is None:
        level = level.with_(rate=DEFAULT_RATE)
    return level.check()


def default_config(a: argparse.Namespace) -> ServerConfig:
    """The model the lab opens: --model's, or the default with its knobs."""
    if a.model is not None:
        return config_from_args(a.model, a)
    return config_from_args(DEFAULT_MODEL, a).with_(**DEFAULT_KNOBS)


def check_config(cfg: ServerConfig) -> ServerConfig:
    """The config checked by its model: a Python model, or an original (`--model c:single`
    opens the lab on it, as the model chooser does)."""
    try:
        spec = model_spec(cfg.model)
    except ModuleNotFoundError:
        raise ConfigError(f"model {cfg.model} is not built yet") from None
    spec.resolve(cfg)
    return cfg


def run(a: argparse.Namespace) -> int:
    """`serverscope` with no subcommand: the live lab."""
    try:
        cfg = check_config(default_config(a))
        level = level_from_args(a)
    except (ConfigError, LoadError) as e:
        return _fail(str(e))
    from tui.app import run_live  # late: Textual loads only when a TUI opens

    try:
        exporter = export.from_args(a)
    except export.ExportError as e:
        return _fail(str(e))
    try:
        code, error = run_live(
            cfg,
            level,
            record=a.record,
            load_duration=a.duration or LIVE_DURATION,
            observers=[exporter.update] if exporter else (),
        )
    finally:
        if exporter is not None:
            exporter.close()
    if error:
        return _fail(error)
    return code
