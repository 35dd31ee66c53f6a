"""The "where the time goes" panel while connections sit in the accept queue and none
leaves it: seen in the lab (prefork --max-workers 8 under keepalive-idle, 20 clients),
the queue row read "none" ("measured: nothing went through it") for the whole run while
`ss -ltn` showed 12, then 24, connections queued for up to 6 s, and service was drawn as
the phase that dominates. The row says how many are queued instead ("4096 queued" fits
its 11 cells)."""

from __future__ import annotations

import dataclasses

import tui_scenarios
from plumbing.loghist import LogHist
from test_tui_phases import _panel_text
from values.snapshot import Snapshot


def _none_left_the_queue(snaps: list[Snapshot]) -> list[Snapshot]:
    out = []
    for s in snaps:
        assert s.window_phases is not None
        phases = dataclasses.replace(s.window_phases, queue=LogHist())
        out.append(dataclasses.replace(s, window_phases=phases))
    return out


def test_a_queue_none_leaves_says_how_many_are_queued_not_none() -> None:
    snaps = _none_left_the_queue(tui_scenarios.prefork_starving_phases())
    queued = sum(ln.queue for ln in snaps[-1].listeners)
    assert queued == 44
    text, _ = _panel_text(snaps)
    queue = next(line for line in text.splitlines() if line.startswith("queue"))
    assert f"{queued} queued" in queue, text
    assert "none" not in queue.split()[1], text
    text, _ = _panel_text(snaps, size=(80, 24))  # one line of p99s on a short screen
    assert f"q {queued} queued" in text, text


def test_an_empty_queue_that_none_went_through_is_still_none() -> None:
    snaps = _none_left_the_queue(tui_scenarios.prefork_starving_phases())
    empty = [
        dataclasses.replace(
            s, listeners=tuple(dataclasses.replace(ln, queue=0) for ln in s.listeners)
        )
        for s in snaps
    ]
    text, _ = _panel_text(empty)
    queue = next(line for line in text.splitlines() if line.startswith("queue"))
    assert queue.split()[1] == "none", text
