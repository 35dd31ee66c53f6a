"""AcceptCounter's reading of bpftrace's output: a map line equal to that map's last one is
not parsed again (it would replace the values with themselves), and every changed line,
including one that goes back to an older content, still is."""

from __future__ import annotations

import json
import types

from readers.accepts_bpf import AcceptCounter


def _map(name: str, data: dict[str, int]) -> str:
    return json.dumps({"type": "map", "data": {name: data}}) + "\n"


TICK = json.dumps({"type": "printf", "data": "tick 1\n"}) + "\n"


def _read(lines: list[str]) -> AcceptCounter:
    acc = AcceptCounter(1)
    acc.proc = types.SimpleNamespace(stdout=iter(lines))  # type: ignore[assignment]
    acc._read()
    return acc


def test_unchanged_lines_are_skipped_and_every_changed_one_is_read() -> None:
    a1, a2 = _map("@a", {"7,7": 2, "8,8": 1}), _map("@a", {"7,7": 3, "8,8": 1})
    q1 = _map("@qs", {"7": 100})
    steady = _read([a1, q1, TICK, a1, q1, TICK, a1, q1, TICK])
    assert steady.totals() == {(7, 7): 2, (8, 8): 1}
    assert steady._qseen == 1  # the queue map was parsed once: unchanged after
    moved = _read([a1, TICK, a1, TICK, a2, TICK])
    assert moved.totals() == {(7, 7): 3, (8, 8): 1}
    # back to an older flush's line (a1 after a2): not the previous flush's, read again
    back = _read([a1, TICK, a2, TICK, a1, TICK])
    assert back.totals() == {(7, 7): 2, (8, 8): 1}
    # two maps: one's line does not hide the other's
    other = _map("@qm", {"7": 5})
    both = _read([a1, other, TICK, a2, other, TICK, a1, TICK])
    assert both.totals()[(7, 7)] == 2 and both._qmax == {7: 5}
