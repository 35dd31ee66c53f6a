"""Sharing the screen's rows between a demo's narration and the measures' column.

The measures carry the evidence a demo points at, so they come first: the column keeps
all its lines when it can, and the narration pages its bullets in what is left. When the
rows run short, the column tightens step by step (`Frame.compact`), each step giving up
what the evidence needs least, before the narration goes below a floor of two lines.
Textual lays out by CSS only; priorities between siblings are computed here (at 120x36,
`demo starvation`'s narration took 9 rows and cut the clients panel to its title).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# what each level gives up, cumulatively (the panels' `rows(level)` say how many lines)
LEVELS = (
    0,  # everything, round borders
    1,  # top borders only, the phases in one line
    2,  # no client phases lines, imbalance header or throughput sparkline
    3,  # the imbalance panel's accepts row alone
)
COMFORT_LEVELS = (0, 1)  # a narration of two bullets a page is worth these, no more


@dataclass(frozen=True)
class Narration:
    """Rows a narration wants, its borders in: all its lines at once, two bullets a page
    (the comfortable), its floor (the title and two lines of a bullet) and the least it
    can do with (the title and one line: a screen very short of rows)."""

    every: int = 0
    comfort: int = 0
    floor: int = 0
    least: int = 0


@dataclass(frozen=True)
class Share:
    level: int  # how tight the measures' column is (Frame.compact)
    narration: int | None  # rows the narration gets (None: no narration)


def share(body: int, column: Callable[[int], int], narration: Narration | None) -> Share:
    """`body`: the rows between the banner and the footer; `column(level)`: the rows the
    measures' column takes at that level, its borders in."""
    n = narration or Narration()
    tries = [(level, n.comfort) for level in COMFORT_LEVELS]
    tries += [(level, n.floor) for level in LEVELS]
    level, need, floor = LEVELS[-1], column(LEVELS[-1]), n.least
    for lvl, wanted in tries:
        rows = column(lvl)
        if rows + wanted <= body:
            level, need, floor = lvl, rows, n.floor
            break
    if narration is None or not n.every:
        return Share(level, None)
    return Share(level, max(floor, min(n.every, body - need)))
