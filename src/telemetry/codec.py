"""Dataclasses to JSON-ready builtins and back, for snapshots and recordings.

Written by hand (a small recursive walk over the dataclass type hints) because the
standard library has no dataclass-from-dict and the project takes no dependency for that
alone. Enum-typed fields (WorkerState, Kind, Role, Severity) are written as their values
(StrEnums are strings) and read back as members; a value the enum does not know is a
FormatError, not a silent string.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any


class FormatError(ValueError):
    """A dict/JSON line that is not a snapshot of a version this code reads."""


def encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [encode(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return decode(args[0], value) if len(args) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise FormatError(f"{tp.__name__}: expected an object, got {type(value).__name__}")
        hints = _hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        kwargs = {k: decode(hints[k], v) for k, v in value.items() if k in names}
        try:
            return tp(**kwargs)
        except TypeError as e:
            raise FormatError(f"{tp.__name__}: {e}") from None
    if origin is tuple:
        (item, *_rest) = typing.get_args(tp)
        return tuple(decode(item, x) for x in value)
    if origin is dict:
        ktype, vtype = typing.get_args(tp)
        return {decode(ktype, k): decode(vtype, v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise FormatError(f"{tp.__name__}: unknown value {value!r}") from None
    if tp is float:
        return float(value)
    if tp is int and isinstance(value, str):
        return int(value)
    return value
