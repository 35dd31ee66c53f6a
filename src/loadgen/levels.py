"""Load levels: what a run asks of the server, and the named presets that each show something.

A `LoadLevel` crosses process lines (CLI/TUI -> runner -> generator process), so it is a
frozen dataclass with a JSON form. The generator re-reads it on every request, so a new
level (`LoadRunner.set_level`) takes effect within a second.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MAX_CLIENTS = 100_000
MAX_DURATION = 24 * 3600.0  # every run ends by itself


class LoadError(ValueError):
    """A load that cannot run; the message is one line for the user."""


@dataclass(frozen=True)
class LoadLevel:
    name: str = "custom"  # preset name, or "custom"
    clients: int = 10  # concurrency: virtual users, each with its own connection
    rate: float | None = None  # None: closed loop; else open loop at this many req/s in all
    keepalive: bool = True  # False: a new connection per request ("Connection: close")
    ramp: float = 0.0  # seconds over which the clients arrive; 0: all at once (burst)
    think_ms: float = 0.0  # pause after each response, before that client's next request
    think_exp: bool = False  # think time exponentially distributed (mean think_ms)
    trickle_ms: float = 0.0  # > 0: each request is sent a byte at a time, this far apart
    cpu_ms: float = 0.0  # request cost, the /work endpoint's knobs (all 0: GET /)
    io_ms: float = 0.0
    bytes: int = 0
    connect_timeout: float = 10.0  # seconds; above 7 s to see the 1 s / 3 s SYN retransmits
    read_timeout: float = 30.0  # seconds from sending a request to its last byte
    duration: float = 10.0  # seconds; the run stops by itself after this
    requests: int | None = None  # stop after this many requests have been sent (None: no cap)

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
        """Range checks; raises LoadError with one line naming the limit."""
        _range("clients", self.clients, 1, MAX_CLIENTS)
        if self.rate is not None:
            _range("rate", self.rate, 0.01, 10_000_000)
        _range("ramp", self.ramp, 0, MAX_DURATION)
        _range("think", self.think_ms, 0, 3_600_000)
        _range("trickle", self.trickle_ms, 0, 60_000)
        _range("cpu-ms", self.cpu_ms, 0, 60_000)
        _range("io-ms", self.io_ms, 0, 60_000)
        _range("bytes", self.bytes, 0, 16 * 1024 * 1024)
        _range("connect timeout", self.connect_timeout, 0.001, 3600)
        _range("read timeout", self.read_timeout, 0.001, 3600)
        _range("duration", self.duration, 0.001, MAX_DURATION)
        if self.requests is not None:
            _range("requests", self.requests, 1, 10**12)
        return self

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
        base = LoadLevel()
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "duration") or value == getattr(base, f.name):
                continue
            if f.name == "keepalive":
                out.append("--keepalive" if value else "--close")
            elif f.name == "think_exp":
                out.append("--think-exp")
            else:
                flag = _FLAGS.get(f.name, f.name.replace("_", "-"))
                out.append(
                    f"--{flag} {value:g}" if isinstance(value, float) else f"--{flag} {value}"
                )
        return " ".join(out)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadLevel:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_FLAGS = {
    "think_ms": "think",
    "trickle_ms": "trickle",
}  # fields whose `load` option is not the field's own name


def _range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):  # also refuses NaN
        raise LoadError(f"{name} must be between {low:g} and {high:g}, got {value:g}")


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
