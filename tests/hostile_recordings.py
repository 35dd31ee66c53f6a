"""Recordings made to break a reader: wrong shapes and types, numbers no renderer can take,
bytes that are not UTF-8, nesting deeper than the parser's stack; and mutations of a valid
recording for the fuzz test. Each crafted file is bytes, made from one valid recording.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import synthetic
from values.recording import FORMAT_NAME
from values.snapshot import FORMAT_VERSION

HEADER = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "created": 0.0, "meta": {}}


def valid_snapshots(n: int = 4) -> list[dict[str, Any]]:
    """JSON-ready snapshots with every part filled: workers with phases, listeners, kernel
    counters, the client's stats with status codes and errors, diagnoses."""
    client = synthetic.load_stats(errors={"refused": 3, "reset": 1})
    snaps = synthetic.series(
        n,
        workers=3,
        accepts=[9, 1, 0],
        connections=[2, 1, 0],
        cpu=[50.0, 5.0, 0.0],
        client=client,
        queue=4,
        queue_ms=1.0,
        server_ms=2.0,
        service_ms=3.0,
    )
    return [json.loads(json.dumps(s.to_dict())) for s in snaps]


def lines(*items: Any) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in items)


def _with(path: str, value: Any) -> bytes:
    """The valid recording with one field of its second snapshot replaced (`a.b.0.c`)."""
    snaps = valid_snapshots()
    node: Any = snaps[1]
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return lines(HEADER, *snaps)


def _raw(path: str, literal: bytes) -> bytes:
    """As _with, with the field's JSON text replaced by `literal` as it is."""
    return _with(path, "@@RAW@@").replace(b'"@@RAW@@"', literal)


CRAFTED: dict[str, Callable[[], bytes]] = {
    "empty file": lambda: b"",
    "header only": lambda: lines(HEADER),
    "no header": lambda: lines({"hello": 1}),
    "header a list": lambda: lines([HEADER]),
    "header a string": lambda: lines("serverscope-telemetry"),
    "header version a string": lambda: lines({**HEADER, "version": "1"}),
    "snapshot a list": lambda: lines(HEADER, [valid_snapshots()[0]]),
    "snapshot a string": lambda: lines(HEADER, "snapshot"),
    "snapshot a number": lambda: lines(HEADER, 42),
    "workers an object": lambda: _with("workers", {"0": {}}),
    "a worker a list": lambda: _with("workers.0", [1, 2, 3]),
    "seq a string": lambda: _with("seq", "abc"),
    "time a string": lambda: _with("time", "now"),
    "seq true": lambda: _with("seq", True),
    "accepts a list": lambda: _with("workers.0.accepts", [1, 2]),
    "cpu_percent a dict": lambda: _with("workers.1.cpu_percent", {"x": 1}),
    "state unknown": lambda: _with("workers.0.state", "boss"),
    "model name a number": lambda: _with("model.name", 7),
    "status code not a number": lambda: _with("client.status", {"abc": 1}),
    "a bucket index past the end": lambda: _with("phases.service.buckets", [[10**15, 1]]),
    "a bucket a triple": lambda: _with("phases.service.buckets", [[1, 2, 3]]),
    "a huge integer literal": lambda: _raw("seq", b"9" * 5000),
    "an integer past int64": lambda: _raw("workers.0.accepts_total", b"9" * 40),
    "NaN": lambda: _raw("workers.0.cpu_percent", b"NaN"),
    "Infinity": lambda: _raw("time", b"Infinity"),
    "1e999": lambda: _raw("wall_time", b"1e999"),
    "deep nesting": lambda: _raw("workers", b"[" * 100_000 + b"]" * 100_000),
    "not UTF-8": lambda: _raw("model.name", b'"\xff\xfe\x80"'),
    "not JSON mid-file": lambda: lines(HEADER, b"{not json", *valid_snapshots()),
}


def valid() -> bytes:
    return lines(HEADER, *valid_snapshots())


# -- mutations, for the fuzz test ------------------------------------------------------------
ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**63, -(2**63) - 1, 10**30, 0.5, -0.0, 1e308, "", "x",
    "waiting", "999", [], [1], [[1, 2]], {}, {"a": 1}, [None], "\u0000", "\ud800",
)  # fmt: skip


def _paths(node: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*here, i))


_PATHS: dict[str, list[tuple[Any, ...]]] = {}


def mutate(rng: random.Random, snap: dict[str, Any]) -> Any:
    """One to three changes to a copy of `snap`: a value replaced by an odd one (of another
    type, or out of range), a key dropped or renamed, a list emptied or doubled."""
    text = json.dumps(snap)
    paths = _PATHS.get(text)
    if paths is None:
        paths = _PATHS[text] = list(_paths(snap))
    out: Any = json.loads(text)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        if not path:
            return rng.choice(ODD_VALUES)
        try:
            parent = out
            for key in path[:-1]:
                parent = parent[key]
            key = path[-1]
            parent[key]  # still there after an earlier change?
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(parent, dict | list):  # an earlier change made it a string
            continue
        op = rng.random()
        if op < 0.6:
            parent[key] = rng.choice(ODD_VALUES)
        elif op < 0.75 and isinstance(parent, dict):
            del parent[key]
        elif op < 0.85 and isinstance(parent, dict):
            parent[key + "_"] = parent.pop(key)
        elif isinstance(parent[key], list):
            parent[key] = parent[key] * 2 if rng.random() < 0.5 else []
        else:
            parent[key] = rng.choice(ODD_VALUES)
    return out


def mutated_line(rng: random.Random, snap: dict[str, Any]) -> bytes:
    """A mutated snapshot as a line; sometimes its text is cut, or a byte is flipped."""
    text = json.dumps(mutate(rng, snap), allow_nan=True).encode("utf-8", "surrogatepass")
    r = rng.random()
    if r < 0.1:
        text = text[: rng.randrange(len(text) + 1)]
    elif r < 0.2 and text:
        i = rng.randrange(len(text))
        text = text[:i] + bytes([rng.randrange(256)]) + text[i + 1 :]
    return text + b"\n"
