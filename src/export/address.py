"""Where to export: an `--export` value parsed into an address, and the loopback rule's
facts. Plain data, below the command line (`commands.export` parses the option) and the
exporter (`export.prometheus` binds it)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_EXPORT_PORT = 9464  # the port OpenTelemetry's Prometheus exporter uses by default


class ExportError(ValueError):
    """A bad --export value, or an address it cannot bind; the message is one line."""


@dataclass(frozen=True, slots=True)
class ExportAddress:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve anywhere

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> ExportAddress:
    """Parse "127.0.0.1:9464", "[::1]:9464", ":9464" or "9464" (host 127.0.0.1)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ExportError(f"--export {text!r}: expected [IPv6]:PORT, e.g. [::1]:9464")
    elif ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = "", text
    host = host or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ExportError(f"--export {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464") from None
    if not 0 <= number <= 65535:
        raise ExportError(f"--export {text!r}: port {number} is not 0..65535")
    return ExportAddress(host, number)
