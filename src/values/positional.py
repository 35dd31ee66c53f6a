"""A fast positional constructor for the frozen, slotted value classes built once per worker
per sample (WorkerSample and the readers' rows)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def positional_new(cls: type[T]) -> Callable[..., T]:
    """A constructor of a frozen, slotted dataclass that takes EVERY field, positionally in
    field order, and stores them straight into the slots. The dataclass's own __init__
    pays an object.__setattr__ per field (frozen), 2.5x dearer for WorkerSample, built
    once per worker per sample (bench/README.md, bench_sampler.py). No defaults, no
    __post_init__: only for plain value classes, which is checked here."""
    if not dataclasses.is_dataclass(cls) or not hasattr(cls, "__slots__"):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__ that this would skip")
    names = [f.name for f in dataclasses.fields(cls)]
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    body = []
    for i, name in enumerate(names):
        env[f"_set{i}"] = getattr(cls, name).__set__  # the slot's member descriptor
        body.append(f"    _set{i}(o, {name})\n")
    src = f"def new({', '.join(names)}):\n    o = _new(_cls)\n{''.join(body)}    return o\n"
    exec(src, env)  # generated from the class's own field names
    fn: Callable[..., T] = env["new"]
    fn.__doc__ = f"{cls.__name__}({', '.join(names)}), every field positionally"
    return fn
