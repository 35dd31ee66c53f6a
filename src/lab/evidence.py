"""What a demo step's narration promises the audience will see, as checks on a snapshot.

A diagnosis says the monitor recognised a phenomenon; the narration also names figures
("connect p99 reaches 1 s", "req/s falls to 0"). Each such figure is an `Evidence`: the
player notes when it first holds, the headless demo says whether it was seen, and the
tests play every step and require it, so the narration cannot promise what the screen
does not show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loadgen.histogram import SUB
from values.snapshot import Snapshot

# a percentile reads its histogram bucket's midpoint, within 1/256 of the true value
_ONE_SECOND_MS = 1000.0 * (1 - 1 / (2 * SUB))


@dataclass(frozen=True)
class Evidence:
    key: str
    says: str  # what the audience sees, for "seen at 2.1 s" lines
    holds: Callable[[Snapshot], bool]


def _connect_1s(s: Snapshot) -> bool:
    c = s.client
    return c is not None and c.connect_ms.count > 0 and c.connect_ms.p99 >= _ONE_SECOND_MS


def _queue_past_limit(s: Snapshot) -> bool:
    return any(ln.limit and ln.queue > ln.limit for ln in s.listeners)


def _overflows(s: Snapshot) -> bool:
    return s.kernel is not None and (s.kernel.overflows_delta or 0) > 0


def _waiting_2s(s: Snapshot) -> bool:
    c = s.client
    return c is not None and (c.oldest_wait_ms or 0.0) >= 2000.0


def _stalled(s: Snapshot) -> bool:
    c = s.client
    return c is not None and c.requests > 0 and c.rps == 0 and _waiting_2s(s)


CONNECT_1S = Evidence("connect_1s", "connect p99 of 1 s or more", _connect_1s)
QUEUE_PAST_LIMIT = Evidence(
    "queue_past_limit", "accept queue one past its backlog", _queue_past_limit
)
OVERFLOWS = Evidence("overflows", "ListenOverflows climbing", _overflows)
WAITING_2S = Evidence("waiting_2s", "a request waiting 2 s or more", _waiting_2s)
STALLED = Evidence("stalled", "0 req/s while requests wait 2 s or more", _stalled)
