"""Dataclasses to JSON-ready builtins and back, for snapshots and recordings.

Written by hand (a small recursive walk over the dataclass type hints) because the
standard library has no dataclass-from-dict and the project takes no dependency for that
alone. Enum-typed fields (WorkerState, Kind, Role, Severity) are written as their values
(StrEnums are strings) and read back as members.

Reading is strict, because a recording is input like any other (a crafted one gave Python
tracebacks, and a list where a count belongs crashed the TUI): every value must be of its
field's type (a bool is not an int; an int is a float; a float is an int only when whole),
every int within int64 and every float finite, an enum value one of its members, a tuple
of fixed length that length; a dataclass's required fields must be there (the keys a
newer version added are ignored). `checks` adds per-class range checks (snapshot.py's).
Anything else is a FormatError naming where, e.g. `workers[2].cpu_percent: expected a
number, got a string`. A decoder per type is built once (functools.cache) and walks no
type hints per value.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

INT64 = (-(2**63), 2**63 - 1)
_INT_KEY = re.compile(r"-?[0-9]{1,19}")


class FormatError(ValueError):
    """A dict/JSON line that is not a snapshot of a version this code reads. `where` is the
    path to the bad value (`workers[2].cpu_percent`), empty when the whole is wrong."""

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason, self.where = reason, where

    def within(self, key: str | int) -> FormatError:
        """The same error, one level further out (`key` holds the bad value)."""
        step = f"[{key}]" if isinstance(key, int) else str(key)
        if not self.where:
            return FormatError(self.reason, step)
        sep = "" if self.where.startswith("[") else "."
        return FormatError(self.reason, step + sep + self.where)


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


Check = Callable[[Any], str | None]  # a decoded value -> what is out of range, or None
Decoder = Callable[[Any], Any]


class Checks(dict[type, Check]):
    """Per-class range checks, {class: check}. Hashable by identity: make one table once
    (a module constant), and the decoders for it are built once."""

    __hash__ = object.__hash__  # type: ignore[assignment]


NO_CHECKS = Checks()


def decode(tp: Any, value: Any, checks: Checks = NO_CHECKS) -> Any:
    """`value` (JSON builtins) as type `tp`, checked all through; FormatError otherwise."""
    return _decoder(tp, checks)(value)


def kind_of(value: Any) -> str:
    """How a message names a JSON value's type: 'a list', 'an object', 'a string'..."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """A value as a message shows it: a scalar itself (cut at 40 characters), else its kind."""
    shown = repr(value) if isinstance(value, str | int | float) else kind_of(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _bad(expected: str, value: Any) -> FormatError:
    return FormatError(f"expected {expected}, got {_shown(value)}")


def _int(value: Any) -> int:
    t = type(value)
    if t is float and value.is_integer():
        value = int(value)  # JSON has one kind of number: a whole float is an int
    elif t is not int:
        raise _bad("an integer", value)
    if not INT64[0] <= value <= INT64[1]:
        raise FormatError(f"integer {_shown(value)} is out of range (int64)")
    return value  # type: ignore[no-any-return]


def _float(value: Any) -> float:
    t = type(value)
    if t is int:
        if not INT64[0] <= value <= INT64[1]:
            raise FormatError(f"number {_shown(value)} is out of range")
        return float(value)
    if t is not float:
        raise _bad("a number", value)
    if not math.isfinite(value):
        raise FormatError(f"expected a finite number, got {value}")
    return value  # type: ignore[no-any-return]


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _bad("true or false", value)
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise _bad("a string", value)
    return value


def _int_key(value: Any) -> int:
    """A dict key that is an int (JSON object keys are strings: "200")."""
    if type(value) is str and _INT_KEY.fullmatch(value):
        return _int(int(value))
    raise _bad("an integer key", value)


@functools.cache
def _decoder(tp: Any, checks: Checks) -> Decoder:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"cannot decode {tp}: one type or None only")
        inner = _decoder(options[0], checks)
        return lambda v: None if v is None else inner(v)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, checks)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence(_decoder(args[0], checks))
        return _fixed(tuple(_decoder(a, checks) for a in args))
    if origin is dict:
        ktype, vtype = typing.get_args(tp)
        key = _int_key if ktype is int else _decoder(ktype, checks)
        return _mapping(key, _decoder(vtype, checks))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    simple = {int: _int, float: _float, bool: _bool, str: _str}.get(tp)
    if simple is None:
        raise TypeError(f"cannot decode {tp}")
    return simple


def _dataclass(tp: type, checks: Checks) -> Decoder:
    hints = typing.get_type_hints(tp)
    fields = [f for f in dataclasses.fields(tp) if f.init]
    decoders = {f.name: _decoder(hints[f.name], checks) for f in fields}
    required = frozenset(
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    check = checks.get(tp)

    def decode_dataclass(value: Any) -> Any:
        if type(value) is not dict:
            raise _bad("an object", value)
        kwargs = {}
        for k, v in value.items():
            dec = decoders.get(k)
            if dec is None:
                continue  # a field a newer serverscope added: not ours to read
            try:
                kwargs[k] = dec(v)
            except FormatError as e:
                raise e.within(k) from None
        if not required <= kwargs.keys():
            raise FormatError(f"missing {', '.join(sorted(required - kwargs.keys()))}")
        try:
            obj = tp(**kwargs)
        except (TypeError, ValueError) as e:
            raise FormatError(str(e)) from None
        if check is not None and (why := check(obj)) is not None:
            raise FormatError(why)
        return obj

    return decode_dataclass


def _sequence(item: Decoder) -> Decoder:
    def decode_sequence(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _bad("a list", value)
        try:  # one comprehension: a histogram's 200 buckets x 6 x 1,024 workers go through
            return tuple([item(x) for x in value])
        except FormatError:
            raise _at_first_bad([item] * len(value), value) from None

    return decode_sequence


def _fixed(items: tuple[Decoder, ...]) -> Decoder:
    lo, hi = INT64
    ints = all(dec is _int for dec in items)  # a histogram bucket: (index, count)

    def decode_fixed(value: Any) -> tuple[Any, ...]:
        if type(value) is not list or len(value) != len(items):
            raise _bad(f"a list of {len(items)}", value)
        if ints and all(type(x) is int and lo <= x <= hi for x in value):
            return tuple(value)
        try:
            return tuple([dec(x) for dec, x in zip(items, value, strict=True)])
        except FormatError:
            raise _at_first_bad(items, value) from None

    return decode_fixed


def _at_first_bad(decoders: Sequence[Decoder], value: list[Any]) -> FormatError:
    """The error of the first item that does not decode, with its index."""
    for i, (dec, x) in enumerate(zip(decoders, value, strict=True)):
        try:
            dec(x)
        except FormatError as e:
            return e.within(i)
    return FormatError("does not decode")  # not reached: some item failed


def _mapping(key: Decoder, val: Decoder) -> Decoder:
    def decode_mapping(value: Any) -> dict[Any, Any]:
        if type(value) is not dict:
            raise _bad("an object", value)
        out = {}
        for k, v in value.items():
            try:
                out[key(k)] = val(v)
            except FormatError as e:
                raise e.within(str(k)[:40]) from None
        return out

    return decode_mapping


def _enum(tp: type[enum.Enum]) -> Decoder:
    members = {m.value: m for m in tp}
    value_types = frozenset(type(v) for v in members)

    def decode_enum(value: Any) -> enum.Enum:
        member = members.get(value) if type(value) in value_types else None
        if member is None and type(value) in value_types:
            try:  # a value the enum still reads under another name (its _missing_)
                member = tp(value)
            except ValueError:
                member = None
        if member is None:
            raise FormatError(f"{tp.__name__}: unknown value {_shown(value)}")
        return member

    return decode_enum
