"""The loopback rule, decided on a host name as written: every reader of a URL (the load
generator, the Prometheus reader) asks the same question before any lookup."""

from __future__ import annotations

import ipaddress


def loopback_address(host: str) -> str | None:
    """The address to use for `host` if it is a literal loopback address or `localhost`
    (127.0.0.1: the servers here listen there), else None. No DNS lookup: the loopback rule
    is decided on the name as written, so a refused name never leaves this machine."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return host if ip.is_loopback else None


LOOPBACK_NAMES = "127.0.0.0/8, ::1, localhost"


def refusal(doing: str, host: str, fix: str = "pass --allow-remote if you own that server") -> str:
    """The one line every reader of a URL refuses a host not on loopback with:
    `refusing to load 10.0.0.1: it is not on loopback (...); pass --allow-remote ...`."""
    return f"refusing to {doing} {host}: it is not on loopback ({LOOPBACK_NAMES}); {fix}"
