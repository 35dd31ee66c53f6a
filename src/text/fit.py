"""Tables that fit the width they are drawn at, and the width a table wants when piped.

rich squeezes every column of a table too wide for the console, down to one letter and an
ellipsis ("wor… 144… ki… sta…" at 80 columns: no column readable). `FitTable` keeps the
columns that fit whole instead, the most telling first, and says how many it left out.
A console that is not a terminal (a pipe, a file) has no width of its own (rich takes
80): `natural_width` is what a renderable needs to be drawn uncut, for `--width`'s default.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table

WIDE = 10_000  # columns to measure in: wider than any table


@dataclass
class Column:
    name: str
    justify: str = "right"  # "left" or "right"


@dataclass
class FitTable:
    """A table of `columns` (in display order) and `rows` (one cell per column) that drops
    columns until it fits: those `priority` does not name first (the last first), then
    the last of those it names."""

    title: str
    columns: Sequence[Column]
    rows: list[Sequence[RenderableType]] = field(default_factory=list)
    priority: Sequence[str] = ()
    notes: list[str] = field(default_factory=list)  # caption lines, e.g. why a figure is odd

    def table(self, keep: Sequence[str] | None = None) -> Table:
        names = [c.name for c in self.columns]
        kept = set(names if keep is None else keep)
        t = Table(title=self.title, title_justify="left")
        for c in self.columns:
            if c.name in kept:
                t.add_column(c.name, justify="left" if c.justify == "left" else "right")
        for row in self.rows:
            t.add_row(*(cell for c, cell in zip(names, row, strict=True) if c in kept))
        left = [n for n in names if n not in kept]
        caption = list(self.notes)
        if left:
            caption.append(f"left out to fit: {', '.join(left)} (--width N shows them)")
        if caption:
            t.caption = "\n".join(caption)
        return t

    def fitting(self, console: Console, width: int) -> Table:
        names = [c.name for c in self.columns]
        order = [n for n in self.priority if n in names]
        order += [n for n in reversed(names) if n not in order]  # the last column first out
        keep = list(order)
        while len(keep) > 1:
            table = self.table(keep)
            if _width(console, table) <= width:
                return table
            keep.pop()  # the least telling column left
        return self.table(keep)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.fitting(console, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options.update(max_width=WIDE), self.table())


def _width(console: Console, renderable: RenderableType) -> int:
    options = console.options.update(max_width=WIDE)
    return Measurement.get(console, options, renderable).maximum


def natural_width(renderable: RenderableType, tables: Sequence[RenderableType] = ()) -> int:
    """The width that draws `tables` uncut (each as wide as it wants; at least 80 columns,
    where the text around them wraps), or `renderable`'s own when `tables` is empty."""
    console = Console(width=WIDE, file=io.StringIO(), color_system=None)
    wanted = [_width(console, t) for t in (tables or [renderable])]
    return max([80, *wanted])
