"""What it takes to start a model: one dataclass that crosses CLI, TUI, supervisor and root.

Knobs left as None take the model's default (Apache's, where the model is Apache's).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from . import reqtimeout
from .http import Limits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BACKLOG = 511  # Apache's ListenBacklog
APACHE_MAX_KEEPALIVE_REQUESTS = 100


class ConfigError(ValueError):
    """A knob out of range; the message is one line naming the limit."""


@dataclass(frozen=True)
class ServerConfig:
    model: str = "many_accepts"
    host: str = DEFAULT_HOST
    port: int = 0  # 0: a free port
    backlog: int = DEFAULT_BACKLOG
    workers: int | None = None  # processes (or event loops for goroutines)
    exclusive: bool = False  # many_accepts: EPOLLEXCLUSIVE, as nginx
    keepalive_timeout: float = 5.0  # KeepAliveTimeout
    # MaxKeepAliveRequests (0 = unlimited); None: the model's own default, Apache's 100 for
    # the C and Apache models, unlimited for the Node and Go shapes (as those servers do)
    max_keepalive_requests: int | None = None
    timeout: float = 60.0  # Timeout: a request must arrive whole within it
    max_cpu_ms: float = 10_000.0  # per-request CPU ceiling of /work?cpu_ms= (400 above it)
    start_servers: int | None = None  # StartServers
    min_spare: int | None = None  # MinSpareServers / MinSpareThreads
    max_spare: int | None = None  # MaxSpareServers / MaxSpareThreads
    max_workers: int | None = None  # MaxRequestWorkers
    threads_per_child: int | None = None  # ThreadsPerChild
    async_factor: float | None = None  # AsyncRequestWorkerFactor
    # RequestReadTimeout (mod_reqtimeout), Apache's syntax; None: the model's default,
    # Apache's for the C and Apache models (the asyncio models do not have it)
    request_read_timeout: str | None = None
    # issue 16: workers time each request's phases into their scoreboard slot (queue wait,
    # in-server wait, service); `serve --no-phases` turns it off (for bench/bench_phases.py)
    phases: bool = True

    @property
    def limits(self) -> Limits:
        return Limits(
            max_keepalive_requests=APACHE_MAX_KEEPALIVE_REQUESTS
            if self.max_keepalive_requests is None
            else self.max_keepalive_requests,
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
        """Range checks every model shares; models check their own knobs in `resolve`."""
        check_host(self.host)
        check_range("--port", self.port, 0, 65535)
        check_range("--backlog", self.backlog, 1, 65535)
        check_range("--keepalive-timeout", self.keepalive_timeout, 0.05, 3600)
        if self.max_keepalive_requests is not None:
            check_range("--max-keepalive-requests", self.max_keepalive_requests, 0, 1_000_000)
        check_range("--timeout", self.timeout, 0.05, 3600)
        check_range("--max-cpu-ms", self.max_cpu_ms, 0, 600_000)
        if self.workers is not None:
            check_range("--workers", self.workers, 1, 1024)
        if self.request_read_timeout is not None:
            try:
                reqtimeout.parse(self.request_read_timeout)
            except ValueError as e:
                raise ConfigError(f"--request-read-timeout: {e}") from None


def check_host(host: str) -> None:
    """An IP address or `localhost`, judged as written: a name is never looked up (issue 11:
    `serve --host 300.1.1.1` went to DNS)."""
    if host.lower() == "localhost":
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"--host must be an IP address (127.0.0.1, ::1, 0.0.0.0) or localhost, got {host!r}"
        ) from None


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
