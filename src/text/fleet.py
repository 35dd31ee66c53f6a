"""`serverscope fleet --once`: the fleet as a rich table, worst first."""

from __future__ import annotations

import time

from rich.console import Group
from rich.text import Text

from values.fleet import Fleet
from values.fleet_format import COLUMNS, LEFT, cells, severity_of

from .fit import Column, FitTable, natural_width

# kept first when the console is too narrow for every column
PRIORITY = ("#", "host", "server", "diagnoses", "imbalance", "queue", "throttled", "port")
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def head(fleet: Fleet) -> Text:
    when = time.strftime("%H:%M:%S", time.localtime(fleet.time))
    took = f", read in {fleet.read_s:.2f} s" if fleet.read_s is not None else ""
    return Text(
        f"fleet from {fleet.prometheus} at {when}: {len(fleet.servers)} servers seen over "
        f"{fleet.minutes:g} min\n({fleet.queries} queries, {fleet.series} series{took})"
    )


def table(fleet: Fleet) -> FitTable:
    t = FitTable(
        "",
        [Column(c, "left" if c in LEFT else "right") for c in COLUMNS],
        priority=PRIORITY,
    )
    for i, s in enumerate(fleet.servers, 1):
        style = SEVERITY_STYLE.get(severity_of(s) or "", "")
        row = dict(zip(COLUMNS, cells(i, s), strict=True))
        t.rows.append([Text(c, style=style) if n == "diagnoses" else c for n, c in row.items()])
    return t


def render(fleet: Fleet) -> Group:
    if not fleet.servers:
        return Group(
            head(fleet),
            Text(
                "no serverscope agent seen: is Prometheus scraping `serverscope attach "
                "--no-ui --export HOST:PORT`? (see docs/fleet.md)"
            ),
        )
    return Group(head(fleet), table(fleet), Text(fleet.order, style="dim"))


def wanted_width(fleet: Fleet) -> int:
    return natural_width(Group(), [table(fleet)])
