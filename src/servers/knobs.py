"""The model knobs: one row each, read by ServerConfig (its defaults), the models' checks,
the command line, the TUI's model chooser and docs/knobs.md.

A row says what every model shares: flag, Apache's directive, type, range, help and the
default every model has unless it has its own. Which models take a knob, and their own
defaults, are the models' (`servers.models.COMMON_KNOBS`, each model's `Knobs`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from plumbing.settings import Setting, by_name

from . import reqtimeout


class ConfigError(ValueError):
    """A knob out of range; the message is one line naming the limit."""


def check_host(host: str) -> None:
    """An IP address or `localhost`, judged as written: a name is never looked up
    (`serve --host 300.1.1.1` went to DNS)."""
    if host.lower() == "localhost":
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"must be an IP address (127.0.0.1, ::1, 0.0.0.0) or localhost, got {host!r}"
        ) from None


POOL_LIMIT = 20_000  # Apache's own ceiling for its pool directives (ServerLimit)

# In the order the model chooser shows them.
KNOBS: tuple[Setting, ...] = (
    Setting(
        "workers",
        int,
        "worker processes (event loops for goroutines; for Apache worker and event, "
        "processes: StartServers = ServerLimit)",
        low=1,
        high=1024,
        label="workers (processes)",
        chooser=True,
        per_model=True,
    ),
    Setting(
        "threads_per_child",
        int,
        "threads in each process",
        low=1,
        high=POOL_LIMIT,
        directive="ThreadsPerChild",
        chooser=True,
        per_model=True,
    ),
    Setting(
        "start_servers",
        int,
        "processes started at once",
        low=1,
        high=POOL_LIMIT,
        directive="StartServers",
        chooser=True,
        per_model=True,
    ),
    Setting(
        "min_spare",
        int,
        "fewer idle workers than this: more are started",
        low=1,
        high=POOL_LIMIT,
        directive="MinSpareServers / MinSpareThreads",
        label="MinSpare",
        chooser=True,
        per_model=True,
    ),
    Setting(
        "max_spare",
        int,
        "more idle workers than this: some are stopped",
        low=1,
        high=POOL_LIMIT,
        directive="MaxSpareServers / MaxSpareThreads",
        label="MaxSpare",
        chooser=True,
        per_model=True,
    ),
    Setting(
        "max_workers",
        int,
        "connections served at once, at most (the pool's ceiling)",
        low=1,
        high=POOL_LIMIT,
        directive="MaxRequestWorkers",
        chooser=True,
        per_model=True,
    ),
    Setting(
        "async_factor",
        float,
        "connections a process holds beyond its threads, per idle thread",
        low=0,
        above=True,
        high=100,
        directive="AsyncRequestWorkerFactor",
        chooser=True,
        per_model=True,
    ),
    Setting(
        "request_read_timeout",
        str,
        "how long a request's head and body may take to arrive, in Apache's syntax; "
        "'header=0 body=0' turns it off",
        default=reqtimeout.APACHE_DEFAULT,
        directive="RequestReadTimeout",
        chooser=True,
        per_model=True,
        syntax=reqtimeout.parse,
        metavar="RULES",
    ),
    Setting(
        "backlog",
        int,
        "listen() backlog: the accept queue's length",
        default=511,
        low=1,
        high=65535,
        directive="ListenBacklog",
        label="listen backlog",
        chooser=True,
    ),
    Setting(
        "exclusive",
        bool,
        "EPOLLEXCLUSIVE: a connection wakes one waiting worker, as nginx",
        default=False,
        label="EPOLLEXCLUSIVE (as nginx)",
        chooser=True,
    ),
    Setting(
        "accept_policy",
        str,
        "how a worker takes connections from the shared socket: all ready at each wake-up "
        "(asyncio, libuv), one per wake-up, less-busy (puma's wait_for_less_busy_worker: a "
        "serving worker waits 5 ms first), rotate (nginx: EPOLLEXCLUSIVE re-armed every "
        "16 accepts)",
        default="all",
        choices=("all", "one", "less-busy", "rotate"),
        label="accept policy",
        chooser=True,
    ),
    Setting(
        "steer",
        str,
        "which reuseport socket gets a connection: the kernel's 4-tuple hash, the receiving "
        "CPU (a classic BPF program), or round robin (an eBPF counter; classic BPF keeps "
        "no state to count with)",
        default="hash",
        choices=("hash", "cbpf-cpu", "cbpf-rr", "ebpf-rr"),
        label="reuseport steering",
        chooser=True,
    ),
    Setting(
        "incoming_cpu",
        bool,
        "SO_INCOMING_CPU: socket i prefers connections received on CPU i, its worker runs there",
        default=False,
        label="SO_INCOMING_CPU",
        chooser=True,
    ),
    Setting(
        "migrate",
        bool,
        "each worker alone holds its reuseport socket, so when it exits or is restarted "
        "the kernel hands its queued connections to the group's other sockets "
        "(net.ipv4.tcp_migrate_req = 1, Linux 5.14+, set in the namespace it runs in)",
        default=False,
        label="migrate a closing worker's queue",
        chooser=True,
    ),
    Setting(
        "worker_timeout",
        float,
        "a watchdog, as gunicorn's --timeout: the master kills (SIGKILL) a worker whose "
        "event loop has been silent this long (stopped, or stuck in a call) and forks a "
        "new one in its slot (0: none)",
        default=0.0,
        low=0,
        high=3600,
        unit="s",
        label="worker watchdog",
    ),
    Setting(
        "policy",
        str,
        "which worker the master hands a connection to: the next in turn, or the one "
        "with the fewest open connections (as envoy's exact_balance)",
        default="round-robin",
        choices=("round-robin", "least-connections"),
        label="hand-off policy",
        chooser=True,
    ),
    Setting(
        "keepalive_timeout",
        float,
        "an idle keep-alive connection is closed after this long",
        default=5.0,
        low=0.05,
        high=3600,
        unit="s",
        directive="KeepAliveTimeout",
    ),
    Setting(
        "max_keepalive_requests",
        int,
        "requests on one connection, at most (0: unlimited)",
        default=100,
        low=0,
        high=1_000_000,
        directive="MaxKeepAliveRequests",
        per_model=True,
    ),
    Setting(
        "timeout",
        float,
        "a request must arrive whole within it (else 408), and a client that takes none "
        "of its response for this long is dropped",
        default=60.0,
        low=0.05,
        high=3600,
        unit="s",
        directive="Timeout",
    ),
    Setting(
        "max_cpu_ms",
        float,
        "the CPU one /work?cpu_ms= request may ask for; more is answered 400",
        default=10_000.0,
        low=0,
        high=600_000,
        unit="ms",
    ),
    Setting(
        "host",
        str,
        "address to listen on: an IP address or localhost",
        default="127.0.0.1",
        directive="Listen",
        syntax=check_host,
        metavar="ADDRESS",
    ),
    Setting(
        "port",
        int,
        "port to listen on (0: a free one)",
        default=0,
        low=0,
        high=65535,
        directive="Listen",
    ),
)

KNOB: dict[str, Setting] = by_name(KNOBS)


def initial(name: str) -> Any:
    """ServerConfig's default for a knob: None where a model may have its own (filled when
    the model resolves the config), else the table's default."""
    knob = KNOB[name]
    return None if knob.per_model else knob.default


def default(name: str) -> Any:
    """The default every model has unless it has its own (a model's `Knobs` field reads it,
    so that a model that takes a knob with everyone's default does not restate it)."""
    return KNOB[name].default


def check(name: str, value: object, *, high: float | None = None) -> None:
    """ConfigError naming the knob's flag when `value` is not one it takes."""
    problem = KNOB[name].problem(value, high=high)
    if problem is not None:
        raise ConfigError(problem)
