"""A seed claim's anchor is the published figure it is held against, printed in every run
beside what that run measured: it holds no figure of ours. Seen: `serverscope seed --only
proc_spawn-even` printed "anchor: Cloudflare 2017: blocking accept is FIFO, even (here
100/100/100/100 of 400)" beside the 51/50/50/49 of 200 the run measured; the "here" figure
was a string, printed on any machine."""

from __future__ import annotations

import re

from lab import seed


def test_no_anchor_carries_a_figure_measured_here() -> None:
    for c in seed.CLAIMS:
        assert "here" not in c.anchor, (c.key, c.anchor)
        assert not re.search(r"\d+/\d+/\d+", c.anchor), (c.key, c.anchor)  # per-worker counts
