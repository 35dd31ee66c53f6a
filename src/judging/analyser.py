"""The analyser: judges what the sampler measured. One per stream of snapshots (a live
session, an attach run, a synthetic series), so each has its own window and memory.

    analyser = Analyser(window_s=5.0)
    snap = analyser.annotate(sampler.sample())   # imbalance and diagnoses filled in

It keeps the snapshots of the last `window_s` seconds, the imbalance running sums over
them (analysis.ImbalanceTracker: O(workers) per sample, not O(workers x window)), the
cumulative phases' reading just before the window (analysis.PhaseWindow: the window's queue
wait, in-server wait and service time are the latest reading minus that one, per worker
and overall, so renderers never subtract), and the diagnoses' memory (diagnosis.Memory:
a phenomenon stays named HOLD_S = 3 s after its evidence was last seen, so the banner
does not flicker off for one sample).
Apart from the sampler so that measuring is one step and judging another: the same
analysis annotates live snapshots and synthetic ones.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Sequence

from values.snapshot import Snapshot

from . import analysis, diagnosis


class Analyser:
    def __init__(
        self,
        window_s: float = analysis.DEFAULT_WINDOW_S,
        *,
        rules: Sequence[diagnosis.Rule] = diagnosis.RULES,
        hold_s: float = diagnosis.HOLD_S,
    ) -> None:
        self.window_s = window_s
        self.rules = tuple(rules)
        self.history: collections.deque[Snapshot] = collections.deque()  # annotated, oldest first
        self._imbalance = analysis.ImbalanceTracker()
        self._phases = analysis.PhaseWindow()
        self._memory = diagnosis.Memory(hold_s)

    def annotate(self, raw: Snapshot) -> Snapshot:
        """`raw` with `window_s`, `imbalance`, `window_phases` (its own and each worker's)
        and `diagnoses` over the window ending at it.
        Its `cost_ms`, when measured, grows by the analysis's own CPU time."""
        t0 = time.thread_time()
        hist = self.history
        cutoff = raw.time - self.window_s + 1e-6  # an interval ending at the cutoff is out
        hist.append(raw)
        while hist and hist[0].time <= cutoff:
            self._phases.leave(hist.popleft())
        self._imbalance.add(raw)
        self._imbalance.evict(cutoff)
        # the rules read the latest snapshot's imbalance (accept_skew), so the window
        # they see ends with it annotated
        snap = dataclasses.replace(raw, window_s=self.window_s, imbalance=self._imbalance.result())
        snap = self._phases.annotate(snap)  # the rules cite the window's phases
        hist[-1] = snap
        found = self._memory.update(raw.time, diagnosis.diagnose(hist, self.rules))
        cost = raw.cost_ms
        if cost is not None:
            cost += (time.thread_time() - t0) * 1000.0
        snap = dataclasses.replace(snap, diagnoses=tuple(found), cost_ms=cost)
        hist[-1] = snap
        return snap
