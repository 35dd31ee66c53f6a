"""Each worker slot's request phases, read from the scoreboard's phase areas for
sources.supervisor_source: a slot's three counts every sample, its histograms only when a
count moved."""

from __future__ import annotations

from itertools import islice
from operator import add, sub
from typing import TYPE_CHECKING

from plumbing.loghist import NBUCKETS, LogHist
from servers import scoreboard
from values.phases import Phases

if TYPE_CHECKING:
    from servers.scoreboard import Scoreboard


class PhaseReader:
    """Each worker slot's request phases, and the whole server's.

    Every sample reads a worker slot's three counts (3 words). A histogram whose count
    moved is read again (`Scoreboard.phase_words`: 203 words, and ~10 us of
    bookkeeping here) at once while at most REREAD_BUDGET slots were read again in this
    sample, else once its last reading is REREAD_S old: under load from hundreds of
    workers a slot's phases lag its request counts by up to a second, and a sample reads
    about nworkers / (REREAD_S x rate) slots (250 busy workers at 4 Hz: ~60, ~2 ms)
    instead of all of them (~15 ms measured); a server with few busy workers is read
    exactly every sample. The whole server's is kept as running dense sums: a histogram
    read again moves its old reading out and its new one in; a slot a new worker took
    keeps its predecessor's counts in (the server's figures are cumulative since start).
    """

    REREAD_BUDGET = 16  # slots read again at once per sample, whatever their age
    REREAD_S = 1.0  # beyond the budget, a changed slot is read again once a second

    def __init__(self, board: Scoreboard) -> None:
        self.board = board
        # slot -> its last reading: generation, counts, phases, when, raw words per phase
        self._seen: dict[int, tuple[int, tuple[int, int, int], Phases, float, list[list[int]]]]
        self._seen = {}
        self._dense = [[0] * NBUCKETS for _ in range(3)]
        self._sum = [0, 0, 0]
        self._max = [0, 0, 0]
        self._total: Phases | None = None  # None: changed since last built
        self._budget = 0

    def begin(self) -> None:
        """A new sample: its budget of slots read again at once."""
        self._budget = self.REREAD_BUDGET

    def slot(self, index: int, generation: int, now: float) -> Phases | None:
        """Slot `index`'s phases (cumulative since its worker started); None if never
        claimed (generation 0)."""
        if not generation:
            return None
        board = self.board
        counts = board.phase_counts(index)
        seen = self._seen.get(index)
        if seen is not None and seen[0] == generation:
            if seen[1] == counts:
                return seen[2]
            if self._budget <= 0 and now - seen[3] < self.REREAD_S:
                return seen[2]  # read again within the second
            hists = [seen[2].queue, seen[2].server, seen[2].service]
            raws = list(seen[4])
            for p in range(3):
                if counts[p] != seen[1][p]:
                    raws[p] = board.phase_words(index, p)
                    hists[p] = scoreboard.hist_of(raws[p])
                    self._account(p, raws[p], seen[4][p])  # the older reading out
        else:  # a new worker: its predecessor's reading stays in the total
            raws = [board.phase_words(index, p) for p in range(3)]
            hists = [scoreboard.hist_of(r) for r in raws]
            for p in range(3):
                self._account(p, raws[p], None)
        self._budget -= 1
        phases = Phases(hists[0], hists[1], hists[2])
        self._seen[index] = (generation, counts, phases, now, raws)
        return phases

    def _account(self, p: int, new: list[int], old: list[int] | None) -> None:
        """Move histogram p of a slot from its `old` raw words to `new` in the totals (C-speed
        map over the buckets: ~5 us, where a loop over LogHist buckets took ~20)."""
        if old is None:
            self._dense[p] = list(map(add, self._dense[p], islice(new, 3, None)))
            self._sum[p] += new[1]
        else:
            diff = map(sub, islice(new, 3, None), islice(old, 3, None))
            self._dense[p] = list(map(add, self._dense[p], diff))
            self._sum[p] += new[1] - old[1]
        if new[2] > self._max[p]:
            self._max[p] = new[2]
        self._total = None

    def total(self) -> Phases:
        """The whole server's: every slot's, its past workers' included."""
        if self._total is None:
            d, sums, maxes = self._dense, self._sum, self._max
            self._total = Phases(*(LogHist.from_counts(d[p], sums[p], maxes[p]) for p in range(3)))
        return self._total
