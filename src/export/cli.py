"""The `--export HOST:PORT` option: parsing, the loopback rule, starting the exporter.

Kept apart from `export.prometheus` so that every subcommand can offer the option without
importing prometheus_client (~0.1 s) until an export is actually asked for.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .prometheus import SnapshotExporter

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


# -- the command line -----------------------------------------------------------------------


def add_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--export HOST:PORT` and `--export-any-host`, for the TUI, `run` and `attach`."""
    p.add_argument(
        "--export",
        metavar="HOST:PORT",
        help="serve Prometheus metrics of the live snapshots on http://HOST:PORT/metrics "
        f"(e.g. 127.0.0.1:{DEFAULT_EXPORT_PORT}; loopback unless --export-any-host)",
    )
    p.add_argument(
        "--export-any-host",
        action="store_true",
        help="allow --export on a non-loopback address (anyone who reaches it sees the metrics)",
    )


def from_args(a: argparse.Namespace, prog: str = "serverscope") -> SnapshotExporter | None:
    """The started exporter `--export` asks for (None without it). Raises ExportError on a
    bad value, a non-loopback address without --export-any-host, or a busy port; warns in
    one line on stderr when it does bind beyond loopback."""
    text = getattr(a, "export", None)
    if not text:
        return None
    address = parse_address(text)
    if not address.loopback:
        if not getattr(a, "export_any_host", False):
            raise ExportError(
                f"--export {address} is not a loopback address; add --export-any-host to "
                "serve the metrics beyond this machine"
            )
        print(
            f"{prog}: warning: metrics exported on {address}, reachable beyond this machine",
            file=sys.stderr,
        )
    from .prometheus import SnapshotExporter  # late: prometheus_client costs ~0.1 s to import

    return SnapshotExporter(address).start()
