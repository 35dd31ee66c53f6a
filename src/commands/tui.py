"""`serverscope` with no subcommand: the live lab in the TUI.

    serverscope [--model M] [--load PRESET] [load options] [--record FILE] [model knobs]
                                   the live lab (default: many_accepts with EPOLLEXCLUSIVE,
                                   steady at 50/s; the load options are `serverscope load`'s)

(`serverscope replay FILE` is `commands.replay`.)

Textual is imported only when a TUI actually opens, so other subcommands start fast.
"""

from __future__ import annotations

import argparse

from lab.server import ConfigError, ServerConfig, model_spec
from lab.session import LIVE_DURATION
from loadgen.levels import LoadError, LoadLevel, preset
from loadgen.options import LOAD_OPTION

from . import cpu_limit_arg, export
from .common import (
    add_load_args,
    add_stuck_args,
    check_output,
    config_from_args,
    fail,
    load_overrides,
    stuck_from_args,
)

NO_LOAD = "none"
# `serverscope` with no arguments must show its phenomenon at once, every time: clients
# arriving one after another into EPOLLEXCLUSIVE's LIFO wake-up, as nginx uses it, go to one
# worker, and at 50 req/s the serving worker is back in epoll_wait before the next arrives
# (launch figures: bench/README.md, default_launch.py).
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
    g.add_argument("--record", metavar="FILE", help="record every snapshot to FILE (JSONL)")
    export.add_args(g)
    cpu_limit_arg.add_arg(g)
    add_load_args(
        p,
        default=DEFAULT_LOAD,
        more=(NO_LOAD,),
        title=f"the live lab's load ({DEFAULT_LOAD} at {DEFAULT_RATE:g} req/s unless --load "
        f"or --rate is given; each load runs {LIVE_DURATION:g} s unless --duration, and g "
        "runs it again; each option overrides the preset's field)",
    )
    add_stuck_args(p)


def load_duration(a: argparse.Namespace) -> float:
    """How long each load runs in the lab, the first and the ones chosen in it."""
    return float(a.duration) if a.duration is not None else LIVE_DURATION


def level_from_args(a: argparse.Namespace) -> LoadLevel | None:
    """The first load: --load's preset (default steady at 50 req/s) with the options over
    it; None for --load none (LoadError if other load options are given with it)."""
    load = a.preset or DEFAULT_LOAD
    given = load_overrides(a)
    if load == NO_LOAD:
        unused = [LOAD_OPTION[k].option for k in given if k != "duration"]
        if unused:
            raise LoadError(f"--load {NO_LOAD} runs no load: drop {', '.join(unused)}")
        LoadLevel().override(**given).check()  # --duration, for the loads chosen later
        return None
    level = preset(load).with_(duration=LIVE_DURATION)
    if a.preset is None and a.rate is None:
        level = level.with_(rate=DEFAULT_RATE)
    # the lab keeps the preset's name over its options, as its chooser and + do ("storm ·
    # 40 clients"); `load`, `run` and `compare` name such a level custom
    return level.with_(**given).check()


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
        check_output("--record", a.record)
    except (ConfigError, LoadError, OSError) as e:
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
            load_duration=load_duration(a),
            observers=[exporter.update] if exporter else (),
            stuck_settings=stuck_from_args(a),
            cpu_limit=a.cpu_limit,
        )
    finally:
        if exporter is not None:
            exporter.close()
    if error:
        return _fail(error)
    return code
