"""What it takes to start a model: one dataclass that crosses CLI, TUI, supervisor and root.

Each knob's default, range, flag and help are its row in `knobs.KNOBS`; a knob left None
takes the model's default (Apache's, where the model is Apache's), else the row's.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from . import knobs, reqtimeout
from .http import Limits
from .knobs import ConfigError as ConfigError  # re-exported: it has always been here
from .knobs import initial


@dataclass(frozen=True)
class ServerConfig:
    model: str = "many_accepts"
    host: str = initial("host")
    port: int = initial("port")  # 0: a free port
    backlog: int = initial("backlog")
    workers: int | None = initial("workers")  # processes (or event loops for goroutines)
    exclusive: bool = initial("exclusive")  # many_accepts: EPOLLEXCLUSIVE, as nginx
    keepalive_timeout: float = initial("keepalive_timeout")
    max_keepalive_requests: int | None = initial("max_keepalive_requests")
    timeout: float = initial("timeout")
    max_cpu_ms: float = initial("max_cpu_ms")
    start_servers: int | None = initial("start_servers")
    min_spare: int | None = initial("min_spare")
    max_spare: int | None = initial("max_spare")
    max_workers: int | None = initial("max_workers")
    threads_per_child: int | None = initial("threads_per_child")
    async_factor: float | None = initial("async_factor")
    request_read_timeout: str | None = initial("request_read_timeout")  # Apache's syntax
    # workers time each request's phases into their scoreboard slot (queue wait, in-server
    # wait, service); `serve --no-phases` turns it off (for bench/bench_phases.py)
    phases: bool = True
    # the balancing policies (servers.knobs says each one's mechanism); new: at the end
    accept_policy: str = initial("accept_policy")  # many_accepts
    steer: str = initial("steer")  # reuseport
    incoming_cpu: bool = initial("incoming_cpu")  # reuseport: SO_INCOMING_CPU
    policy: str = initial("policy")  # cluster
    migrate: bool = initial("migrate")  # reuseport: tcp_migrate_req hands a closing queue on
    worker_timeout: float = initial("worker_timeout")  # reuseport: the watchdog's, s (0: off)

    @property
    def limits(self) -> Limits:
        mka = self.max_keepalive_requests
        return Limits(
            max_keepalive_requests=knobs.default("max_keepalive_requests") if mka is None else mka,
            keepalive_timeout=self.keepalive_timeout,
            request_timeout=self.timeout,
            read_timeout=None
            if self.request_read_timeout is None
            else reqtimeout.parse(self.request_read_timeout),
        )

    def for_model(self, model: str) -> ServerConfig:
        """The same address, backlog and timeouts for `model`, with its own defaults for
        everything else (its knobs, and its cap on requests per connection)."""
        return ServerConfig(
            model=model,
            host=self.host,
            port=self.port,
            backlog=self.backlog,
            keepalive_timeout=self.keepalive_timeout,
            timeout=self.timeout,
            max_cpu_ms=self.max_cpu_ms,
            phases=self.phases,
        )

    def with_(self, **changes: Any) -> ServerConfig:
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def check_common(self) -> None:
        """Every knob given against its row's range; models check how their own knobs
        relate (and their scoreboard's size) in `resolve`."""
        for knob in knobs.KNOBS:
            knobs.check(knob.name, getattr(self, knob.name))


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
