"""The registry of concurrency models: names, one-line descriptions, knobs, defaults.

Each model lives in its own module of this package, exposing `SPEC` (a `ModelSpec`) and
`run(ctx)`, which runs in the model's root process (see `root.py`).

A Python model declares its knobs as a frozen dataclass whose field defaults are its
defaults (`ModelSpec.typed`); its `run` reads them with `SPEC.knobs_of(ctx.config)`, typed
and never None, so no model restates a default as `cfg.x or N`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from types import ModuleType
from typing import Any, Generic, TypeVar

from . import knobs
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

# Knobs every model takes (the rest are a model's own: its `Knobs`, or its spec's).
COMMON_KNOBS = frozenset(
    {
        "model",
        "host",
        "port",
        "backlog",
        "keepalive_timeout",
        "phases",  # every model times its requests' phases (serve --no-phases)
        "max_keepalive_requests",
        "timeout",
        "max_cpu_ms",
    }
)


K = TypeVar("K")


@dataclass(frozen=True)
class ModelSpec(Generic[K]):
    name: str
    summary: str  # one line, for `serve --list` and the TUI
    origin: str  # where the seed document takes it from
    knobs: frozenset[str] = frozenset()  # ServerConfig fields it uses beyond COMMON_KNOBS
    defaults: dict[str, object] = field(default_factory=dict)  # its values for None knobs
    check: Callable[[ServerConfig], None] | None = None  # model-specific range checks
    listeners: Callable[[ServerConfig], int] = lambda cfg: 1  # listening sockets to open
    shape: type[K] | None = None  # the typed knobs (a frozen dataclass) of a Python model
    said: dict[str, str] = field(default_factory=dict)  # a default this machine computes,
    # in words for the docs ("one per core"): its figure here is not the docs' to say

    @classmethod
    def typed(
        cls,
        shape: type[K],
        *,
        name: str,
        summary: str,
        origin: str,
        check: Callable[[K], None] | None = None,
        listeners: Callable[[K], int] | None = None,
        said: dict[str, str] | None = None,
    ) -> ModelSpec[K]:
        """A spec whose knobs and defaults are `shape`'s fields (the common knobs among
        them, such as max_keepalive_requests, only set the model's default)."""
        defaults = {f.name: f.default for f in dataclasses.fields(_dc(shape))}

        def typed_check(cfg: ServerConfig) -> None:
            if check is not None:
                check(made.knobs_of(cfg))

        def typed_listeners(cfg: ServerConfig) -> int:
            return 1 if listeners is None else listeners(made.knobs_of(cfg))

        made = cls(
            name=name,
            summary=summary,
            origin=origin,
            knobs=frozenset(defaults) - COMMON_KNOBS,
            defaults=defaults,
            check=typed_check,
            listeners=typed_listeners,
            shape=shape,
            said=said or {},
        )
        return made

    def knobs_of(self, cfg: ServerConfig) -> K:
        """The model's knobs from `cfg`: its value where set, else the model's default."""
        assert self.shape is not None, f"model {self.name} has no typed knobs"
        given = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(_dc(self.shape))}
        return self.shape(**{k: v for k, v in given.items() if v is not None})

    def takes(self, name: str) -> bool:
        return name in COMMON_KNOBS or name in self.knobs

    def default(self, name: str) -> object:
        """Its default for a knob it takes: its own, else every model's (None: none)."""
        if name in self.defaults:
            return self.defaults[name]
        return knobs.default(name) if name in knobs.KNOB else None

    def resolve(self, cfg: ServerConfig) -> ServerConfig:
        """Fill the model's defaults, refuse knobs it does not have and values out of range."""
        base = ServerConfig()
        for f in fields(ServerConfig):
            name = f.name
            if self.takes(name):
                continue
            if getattr(cfg, name) != getattr(base, name):
                flag = knobs.KNOB[name].option
                raise ConfigError(
                    f"model {self.name} has no {flag} (it takes: {self.knob_flags()})"
                )
        filled = {
            k: self.default(k)
            for k in knobs.KNOB
            if self.takes(k) and getattr(cfg, k) is None and self.default(k) is not None
        }
        cfg = cfg.with_(**filled, model=self.name)
        cfg.check_common()
        if self.check is not None:
            self.check(cfg)
        return cfg

    def knob_flags(self) -> str:
        own = [k.option for k in knobs.KNOBS if k.name in self.knobs]
        return ", ".join(own) or "none"


def load(name: str) -> ModuleType:
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return importlib.import_module(f"servers.{name}")


def _dc(shape: type[Any]) -> Any:
    return shape  # a dataclass type, which `dataclasses.fields` takes (typeshed cannot say)


def spec(name: str) -> ModelSpec[Any]:
    return load(name).SPEC


def available() -> list[ModelSpec[Any]]:
    """The specs of every model whose module exists (all nine once they are built)."""
    out = []
    for name in MODEL_NAMES:
        try:
            out.append(spec(name))
        except ModuleNotFoundError:
            continue
    return out
