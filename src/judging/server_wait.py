"""The in-server wait rule: requests wait inside the server before a handler starts them
longer than they are then served (a pure rule over the window, see judging.diagnosis)."""

from __future__ import annotations

from collections.abc import Sequence

from values.findings import Diagnosis, Severity
from values.snapshot import Snapshot
from values.units import dur

from . import explain
from .master import master_bottleneck
from .rulekit import PHASE_MIN_COUNT, window_phase
from .rulekit import live as _live
from .rulekit import p as _p
from .rulekit import span as _span

# in-server wait: requests wait inside the server (a master's hand-off, a parked
# connection, a busy loop) longer than they are served, over enough requests to judge.
WAIT_MIN_COUNT = 100  # requests in the window before in-server wait is judged on its own
# (prefork on a busy 2-core box: p99 15 ms over 25 requests, service p99 12 ms: noise)
WAIT_MIN_P99_MS = 10.0  # the window's in-server wait p99 at least this ...
WAIT_OVER_SERVICE = 2.0  # ... and above this many times the service p99


def server_wait(win: Sequence[Snapshot]) -> Diagnosis | None:
    """Requests wait inside the server before a handler starts them longer than they are
    then served (the window's p99s): a master's hand-off (cluster, goroutines' acceptor),
    a parked connection (event), a busy loop, requests pipelined behind others. Left to
    `master_bottleneck` when that fires (it cites the hand-off itself)."""
    if not win:
        return None
    last = win[-1]
    wait = window_phase(last, "server", WAIT_MIN_COUNT)
    service = window_phase(last, "service", PHASE_MIN_COUNT)
    if wait is None:
        return None
    p99 = wait.quantile_ms(0.99) or 0.0
    served = service.quantile_ms(0.99) if service is not None else None
    if p99 < WAIT_MIN_P99_MS or (served is not None and p99 <= WAIT_OVER_SERVICE * served):
        return None
    if master_bottleneck(win) is not None:
        return None
    model = last.model.name if last.model else "the server"
    what = (
        f"{model} master: hand-off adds {_p(wait, 0.99)} at p99"
        if explain.dispatching(win)
        else f"requests wait {_p(wait, 0.99)} inside {model} before a worker starts them (p99)"
    )
    service_text = f", service p99 {_p(service, 0.99)}" if service is not None else ""
    top = _top_waiter(last)
    return Diagnosis(
        "server_wait",
        Severity.WARNING,
        f"in-server wait: {what}{service_text}, {wait.count} requests in {_span(win)}{top}",
    )


def _top_waiter(s: Snapshot) -> str:
    """ ", most at worker 3 (p99 40 ms)" when one worker's in-server wait stands out."""
    per = [
        (h.quantile_ms(0.99) or 0.0, w.label)
        for w in _live(s)
        if w.window_phases is not None
        and (h := w.window_phases.server) is not None
        and h.count >= WAIT_MIN_COUNT // 4
    ]
    if len(per) < 2:
        return ""
    per.sort()
    (top, label), (second, _) = per[-1], per[-2]
    if top < 2 * second:
        return ""
    return f", most at {label} (p99 {dur(top)})"
