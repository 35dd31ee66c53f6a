"""AttachSource hands a process's Phases object again while its queue wait is the same
object (so the analyser's window does not subtract it again), and a new one the moment
the queue wait is another: the window then shows what the new reading gained."""

from __future__ import annotations

import synthetic
from judging.analysis import phases_minus
from sources.attach_source import AttachSource


def test_the_same_queue_wait_gives_the_same_phases_and_a_new_one_is_seen() -> None:
    src = AttachSource.__new__(AttachSource)  # only its per-process phases are exercised
    src._phases = {}
    key = (100, 5)
    h1, h2 = synthetic.hist(2.0, 10), synthetic.hist(2.0, 13)
    first = src._phases_of(key, h1)
    assert first is not None and first.queue is h1
    assert src._phases_of(key, h1) is first  # unchanged: the same object
    moved = src._phases_of(key, h2)
    assert moved is not first and moved is not None and moved.queue is h2
    gained = phases_minus(moved, first)
    assert gained is not None and gained.queue is not None and gained.queue.count == 3
    assert src._phases_of(key, None) is None and key not in src._phases
