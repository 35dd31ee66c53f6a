"""The `--export HOST:PORT` option: parsing, the loopback rule, starting the exporter.

Kept apart from `export.prometheus` (the renderer, below the commands) so that every
subcommand can offer the option without importing prometheus_client (~0.1 s) until an
export is actually asked for.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from export.address import DEFAULT_EXPORT_PORT, ExportAddress, ExportError, parse_address

if TYPE_CHECKING:
    from export.prometheus import SnapshotExporter

__all__ = ["ExportAddress", "ExportError", "add_args", "from_args", "parse_address"]


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
    from export.prometheus import SnapshotExporter  # late: prometheus_client costs ~0.1 s to import

    return SnapshotExporter(address).start()
