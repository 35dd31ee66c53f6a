"""Which engine drives a load: the fast one (serverscope's own servers, plain http) or httpx
(full HTTP semantics, TLS). A module of its own so that engine.py, which both engines build
on, does not import them back; httpx is imported only when chosen."""

from __future__ import annotations

from .engine import ENGINES, Engine, Target
from .levels import LoadError, LoadLevel
from .recorder import Recorder


def make_engine(name: str, target: Target, level: LoadLevel, rec: Recorder) -> Engine:
    if name == "fast":
        from .engine_fast import FastEngine

        if target.scheme != "http":
            raise LoadError("the fast engine speaks plain http only; use --engine httpx for TLS")
        return FastEngine(target, level, rec)
    if name == "httpx":
        from .engine_httpx import HttpxEngine  # late: httpx loads only when chosen

        return HttpxEngine(target, level, rec)
    raise LoadError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
