"""Load levels: what a run asks of the server, and the named presets that each show something.

A `LoadLevel` crosses process lines (CLI/TUI -> runner -> generator process), so it is a
frozen dataclass with a JSON form. The generator re-reads it on every request, so a new
level (`LoadRunner.set_level`) takes effect within a second.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .options import LOAD_OPTIONS, default


class LoadError(ValueError):
    """A load that cannot run; the message is one line for the user."""


@dataclass(frozen=True)
class LoadLevel:
    """Each field but `name` is a row of `options.LOAD_OPTIONS`: its default, range, unit
    and flag are there."""

    name: str = "custom"  # preset name, or "custom"
    clients: int = default("clients")
    rate: float | None = default("rate")  # None: closed loop
    keepalive: bool = default("keepalive")  # False: "Connection: close"
    ramp: float = default("ramp")
    think_ms: float = default("think_ms")
    think_exp: bool = default("think_exp")
    trickle_ms: float = default("trickle_ms")
    cpu_ms: float = default("cpu_ms")  # request cost: the /work endpoint's (all 0: GET /)
    io_ms: float = default("io_ms")
    bytes: int = default("bytes")
    connect_timeout: float = default("connect_timeout")
    read_timeout: float = default("read_timeout")
    duration: float = default("duration")
    requests: int | None = default("requests")  # None: no cap

    @property
    def target(self) -> str:
        """The request target: `/` when the request costs nothing, else `/work?...`."""
        if not (self.cpu_ms or self.io_ms or self.bytes):
            return "/"
        return f"/work?cpu_ms={self.cpu_ms:g}&io_ms={self.io_ms:g}&bytes={int(self.bytes)}"

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    def with_(self, **changes: Any) -> LoadLevel:
        return replace(self, **changes)

    def check(self) -> LoadLevel:
        """Range checks; raises LoadError with one line naming the option and its limit."""
        for option in LOAD_OPTIONS:
            problem = option.problem(getattr(self, option.name))
            if problem is not None:
                raise LoadError(problem)
        return self

    def override(self, **changes: Any) -> LoadLevel:
        """This level with some options changed: still the preset it was when only its
        duration changes (`--load burst --duration 5`), else "custom"."""
        level = self.with_(**changes)
        if any(k != "duration" and v != getattr(self, k) for k, v in changes.items()):
            level = level.with_(name="custom")
        return level

    def describe(self) -> str:
        loop = f"open loop at {self.rate:g} req/s" if self.rate is not None else "closed loop"
        conn = "keep-alive" if self.keepalive else "a new connection per request"
        arrival = f"ramped over {self.ramp:g} s" if self.ramp else "arriving at once"
        parts = [f"{self.clients} clients", loop, conn, arrival]
        if self.think_ms:
            parts.append(f"think {self.think_ms:g} ms" + (" (exp)" if self.think_exp else ""))
        if self.trickle_ms:
            parts.append(f"each request sent a byte every {self.trickle_ms:g} ms")
        parts.append(f"GET {self.target}")
        return ", ".join(parts)

    @property
    def preset(self) -> str | None:
        """The preset this level is, its duration aside (None: not a preset's)."""
        base = PRESETS.get(self.name)
        return (
            self.name if base is not None and base.with_(duration=self.duration) == self else None
        )

    def flags(self) -> str:
        """The `serverscope load` options that make this level (its duration aside):
        `--preset NAME` for a preset, else every field that differs from the defaults."""
        if self.preset is not None:
            return f"--preset {self.preset}"
        out = []
        for option in LOAD_OPTIONS:
            value = getattr(self, option.name)
            if option.name == "duration" or value == option.default:
                continue
            if option.kind is bool:
                out.append(option.option if value else option.off_flag)
            else:
                out.append(f"{option.option} {option.show(value)}")
        return " ".join(out)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadLevel:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


PRESETS: dict[str, LoadLevel] = {
    "light": LoadLevel(name="light", clients=2, think_ms=100, duration=30),
    "steady": LoadLevel(name="steady", clients=20, rate=200, ramp=2, cpu_ms=1, duration=30),
    "burst": LoadLevel(name="burst", clients=20, duration=20),
    "storm": LoadLevel(name="storm", clients=100, keepalive=False, duration=20),
    "keepalive-idle": LoadLevel(
        name="keepalive-idle", clients=300, ramp=3, think_ms=2000, duration=60
    ),
    "slow-io": LoadLevel(name="slow-io", clients=50, io_ms=200, ramp=1, duration=30),
    "overload": LoadLevel(
        name="overload", clients=100, rate=600, cpu_ms=5, read_timeout=60, duration=30
    ),
    "slowloris": LoadLevel(name="slowloris", clients=300, trickle_ms=1000, duration=60),
}

PRESET_HELP: dict[str, str] = {
    "light": "2 keep-alive clients, 100 ms think time: a trickle to see the models idle",
    "steady": "open loop 200 req/s of 1 ms CPU over 20 keep-alive clients: a fair baseline",
    "burst": "20 keep-alive clients connect at the same instant, then send back to back: "
    "accept skew (many_accepts)",
    "storm": "100 clients, a new connection per request, back to back: accept-heavy, "
    "fills accept queues",
    "keepalive-idle": "300 keep-alive clients each sending one request every 2 s and idling "
    "between: pins every prefork/worker slot (starvation)",
    "slow-io": "50 keep-alive clients on requests that wait 200 ms for I/O: "
    "blocking pools vs event loops",
    "overload": "open loop 600 req/s of 5 ms CPU (3 cores' worth on 2): latency grows "
    "without bound, no coordinated omission",
    "slowloris": "300 clients each sending its request a byte a second: pins every blocking "
    "worker until the request-read timeout (20-40 s) or Timeout (60 s) frees it",
}


def preset(name: str) -> LoadLevel:
    try:
        return PRESETS[name]
    except KeyError:
        raise LoadError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
