"""The fix screen's table (f in the lab) read at the sizes the lab is used at: every
verdict and every figure whole, not cut to an ellipsis. Seen at 120x36: the verdict column
left 6 cells, `no signi… diffe…`, `not teste… too short: 2 + 2 windo…`."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

import synthetic
from judging import verdict, windows
from tui.screens import fix as fix_screen


def rec(seed: int, **kw: object) -> windows.Recording:
    return windows.read(synthetic.noisy(40, seed=seed, **kw), f"seed{seed}")  # type: ignore[arg-type]


def drawn(v: verdict.Verdict, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(fix_screen.Fitted(v))  # as the screen draws it, at its width
    return console.export_text()


@pytest.mark.parametrize("width", [118, 78])  # the body of a 120- and an 80-column screen
def test_every_verdict_and_figure_is_whole_on_a_lab_sized_screen(width: int) -> None:
    # as the lab's runs give them: the diagnosis' share of the time, the rest of the
    # machine busier in one run (its long "not judged: ..." verdicts)
    before = rec(1, rules=[("accept_skew", 0.7)], model="many_accepts")
    after = rec(2, weights=[6, 1, 1, 1], latency_ms=10.0, other_cores=1.2)
    v = verdict.judge(before, after)
    text = drawn(v, width)
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= width, text
    flat = re.sub(r"[│┃\s]+", " ", text)  # the cells' words, whatever their wrapping
    for r in v.rows:
        if r.shown == ("-", "-") and not r.tested:
            continue
        for word in r.direction.split():
            assert word in flat, (word, text)
