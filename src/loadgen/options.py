"""The load options: one row per LoadLevel field, read by LoadLevel (its defaults, checks
and `flags()`), the command line of `load`, `run`, `compare` and the live lab, the TUI's
load chooser and docs/knobs.md."""

from __future__ import annotations

from typing import Any

from plumbing.settings import Setting, by_name

MAX_CLIENTS = 100_000
MAX_DURATION = 24 * 3600.0  # every run ends by itself
MAX_REQUEST_MS = 60_000.0  # what one request may cost, think or trickle at most

# In LoadLevel's order, which `flags()` keeps.
LOAD_OPTIONS: tuple[Setting, ...] = (
    Setting(
        "clients",
        int,
        "concurrent clients (virtual users), each with its own connection",
        default=10,
        low=1,
        high=MAX_CLIENTS,
        chooser=True,
    ),
    Setting(
        "rate",
        float,
        "open loop at this many requests a second in all, whatever the server does",
        low=0.01,
        high=10_000_000,
        unit="req/s",
        chooser=True,
        none_means="closed loop",
    ),
    Setting(
        "keepalive",
        bool,
        "keep each connection for the next request (--close: a new connection per request)",
        default=True,
        off_flag="--close",
    ),
    Setting(
        "ramp",
        float,
        "the clients arrive over this many seconds (0: all at once, a burst)",
        default=0.0,
        low=0,
        high=MAX_DURATION,
        unit="s",
    ),
    Setting(
        "think_ms",
        float,
        "each client's pause after a response, before its next request",
        default=0.0,
        low=0,
        high=3_600_000,
        unit="ms",
        flag="--think",
    ),
    Setting(
        "think_exp",
        bool,
        "think times exponentially distributed (mean --think)",
        default=False,
    ),
    Setting(
        "trickle_ms",
        float,
        "send each request a byte at a time, this far apart (slowloris; fast engine)",
        default=0.0,
        low=0,
        high=MAX_REQUEST_MS,
        unit="ms",
        flag="--trickle",
    ),
    Setting(
        "cpu_ms",
        float,
        "CPU each request burns in the server (/work?cpu_ms=)",
        default=0.0,
        low=0,
        high=MAX_REQUEST_MS,
        unit="ms",
    ),
    Setting(
        "io_ms",
        float,
        "what each request waits for in the server, as I/O (/work?io_ms=)",
        default=0.0,
        low=0,
        high=MAX_REQUEST_MS,
        unit="ms",
    ),
    Setting(
        "bytes",
        int,
        "bytes of each response (/work?bytes=)",
        default=0,
        low=0,
        high=16 * 1024 * 1024,
    ),
    Setting(
        "connect_timeout",
        float,
        "a connect not answered by then is an error (above 7 s to see the 1 s and 3 s SYN "
        "retransmits)",
        default=10.0,
        low=0.001,
        high=3600,
        unit="s",
    ),
    Setting(
        "read_timeout",
        float,
        "from sending a request to its last byte, at most",
        default=30.0,
        low=0.001,
        high=3600,
        unit="s",
    ),
    Setting(
        "duration",
        float,
        "the load stops by itself after this long",
        default=10.0,
        low=0,
        above=True,
        high=MAX_DURATION,
        unit="s",
        chooser=True,
    ),
    Setting(
        "requests",
        int,
        "stop after this many requests have been sent",
        low=1,
        high=10**12,
        none_means="no cap",
    ),
)

LOAD_OPTION: dict[str, Setting] = by_name(LOAD_OPTIONS)


def default(name: str) -> Any:
    """LoadLevel's default for a field (typed Any: the field's annotation says its type)."""
    return LOAD_OPTION[name].default
