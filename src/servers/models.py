"""The registry of concurrency models: names, one-line descriptions, knobs, defaults.

Each model lives in its own module of this package, exposing `SPEC` (a `ModelSpec`) and
`run(ctx)`, which runs in the model's root process (see `root.py`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from types import ModuleType

from .config import ConfigError, ServerConfig

# In the order a lesson goes: from concurrency 1 to the Go shape.
MODEL_NAMES = (
    "single",
    "proc_spawn",
    "prefork",
    "worker",
    "event",
    "cluster",
    "many_accepts",
    "reuseport",
    "goroutines",
)

# Knobs every model takes.
COMMON_KNOBS = frozenset(
    {
        "model",
        "host",
        "port",
        "backlog",
        "keepalive_timeout",
        "max_keepalive_requests",
        "timeout",
        "max_cpu_ms",
    }
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str  # one line, for `serve --list` and the TUI
    origin: str  # where the seed document takes it from
    knobs: frozenset[str] = frozenset()  # ServerConfig fields it uses beyond COMMON_KNOBS
    defaults: dict[str, object] = field(default_factory=dict)  # its values for None knobs
    check: Callable[[ServerConfig], None] | None = None  # model-specific range checks
    listeners: Callable[[ServerConfig], int] = lambda cfg: 1  # listening sockets to open

    def resolve(self, cfg: ServerConfig) -> ServerConfig:
        """Fill the model's defaults, refuse knobs it does not have and values out of range."""
        base = ServerConfig()
        for f in fields(ServerConfig):
            name = f.name
            if name in COMMON_KNOBS or name in self.knobs:
                continue
            if getattr(cfg, name) != getattr(base, name):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"model {self.name} has no {flag} (it takes: {self.knob_flags()})"
                )
        filled = {k: v for k, v in self.defaults.items() if getattr(cfg, k) is None}
        cfg = cfg.with_(**filled, model=self.name)
        cfg.check_common()
        if self.check is not None:
            self.check(cfg)
        return cfg

    def knob_flags(self) -> str:
        return ", ".join("--" + k.replace("_", "-") for k in sorted(self.knobs)) or "none"


def load(name: str) -> ModuleType:
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return importlib.import_module(f"servers.{name}")


def spec(name: str) -> ModelSpec:
    return load(name).SPEC


def available() -> list[ModelSpec]:
    """The specs of every model whose module exists (all nine once they are built)."""
    out = []
    for name in MODEL_NAMES:
        try:
            out.append(spec(name))
        except ModuleNotFoundError:
            continue
    return out
