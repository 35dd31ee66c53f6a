"""Worst first: the order `serverscope fleet` lists servers in, and why each is where it is.

The order (ORDER says it in words, on screen and in the JSON):
1. the most severe diagnosis active now (critical, warning, info, none), as each agent's own
   rules judged it (with their thresholds and evidence: judging.diagnosis). An agent
   Prometheus cannot scrape (`up` 0), or whose last snapshot is older than STALE_S,
   counts as critical: what it hides may be the worst;
2. then the pressure, the largest of these figures, each 0 (fine) .. 1 (as bad as it gets):
   - the fullest accept queue's fill (queue / limit);
   - how far the top worker's share is from an even one, (top - 1/n) / (1 - 1/n), of the
     accepts, or of the open connections when the accepts are too few to judge (as the
     accept-skew rule does); only a spread over enough events to mean anything
     (diagnosis.enough_to_judge: 2 accepts both taken by one worker are no skew);
   - the share of CPU (CFS) periods throttled, when the exporter has the series;
   a figure that cannot be judged is unknown and ranks below every known one;
3. then more active diagnoses first; then by name, so the order is stable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from values.findings import Imbalance
from values.fleet import FleetImbalance, FleetServer, Standing

from . import diagnosis

STALE_S = 60.0  # a snapshot older than this: the agent stopped sampling (4x a 15 s scrape)
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
NO_DIAGNOSIS = 3
ORDER = (
    "worst first: the most severe active diagnosis (critical, warning, info, none; an agent "
    f"not scraped or silent over {STALE_S:g} s counts as critical), then the largest of the "
    "fullest queue's fill, the top accept share's distance from even (open connections when "
    "accepts are too few to judge) and the share of CPU periods throttled, then the number "
    "of diagnoses"
)
SPREAD_METRICS = ("accepts", "connections")  # as the accept-skew rule reads them


def not_seen(s: FleetServer) -> str | None:
    """Why the agent's figures are not current ('not scraped', 'silent 95 s'), or None."""
    if s.up is False:
        return "not scraped (up 0)"
    if s.age_s is None:
        return "no snapshot"
    if s.age_s > STALE_S:
        return f"silent {s.age_s:.0f} s"
    return None


def judged(imb: FleetImbalance) -> bool:
    """Enough events over enough workers for the spread to mean anything."""
    if imb.workers is None or imb.total is None or imb.window_s is None:
        return False
    basis = Imbalance(imb.metric, imb.window_s, imb.workers, imb.total, imb.jain, imb.top_share)
    return diagnosis.enough_to_judge(imb.metric, basis)


def accept_spread(s: FleetServer) -> FleetImbalance | None:
    """The spread the ranking reads: the accepts when judged, else the open connections
    when judged; None when neither rests on enough events."""
    for metric in SPREAD_METRICS:
        imb = s.spread(metric)
        if imb is not None and judged(imb) and imb.from_even is not None:
            return imb
    return None


def pressure(s: FleetServer) -> tuple[float | None, str | None]:
    """(the largest judged figure 0..1, its name), or (None, None)."""
    figures: list[tuple[float, str]] = []
    if (fill := s.queue_fill) is not None:
        figures.append((min(fill, 1.0), "queue"))
    if (imb := accept_spread(s)) is not None and imb.from_even is not None:
        figures.append((imb.from_even, imb.metric))
    if s.throttled is not None:
        figures.append((s.throttled, "throttled"))
    if not figures:
        return None, None
    value, name = max(figures)
    return value, name


def standing(s: FleetServer) -> Standing:
    gone = not_seen(s)
    active = sorted(s.diagnoses, key=lambda d: SEVERITY_RANK.get(d.severity, NO_DIAGNOSIS))
    severity = "critical" if gone else (active[0].severity if active else None)
    value, by = pressure(s)
    parts = [gone] if gone else []
    parts += [f"{d.severity} {d.rule}" for d in active]
    if value is not None:
        parts.append(f"pressure {value:.2f} ({by})")
    elif not gone:
        parts.append("pressure unknown")
    spread = accept_spread(s)
    reason = "; ".join(parts) or "nothing to judge"
    return Standing(severity, value, by, reason, spread.metric if spread else None, gone)


def sort_key(s: FleetServer) -> tuple[int, float, int, str]:
    st = s.standing or standing(s)
    sev = SEVERITY_RANK.get(st.severity or "", NO_DIAGNOSIS)
    value = st.pressure if st.pressure is not None else -1.0
    return (sev, -value, -len(s.diagnoses), s.id.name)


def rank(servers: Iterable[FleetServer]) -> tuple[FleetServer, ...]:
    """The servers with their standing, worst first."""
    placed = [dataclasses.replace(s, standing=standing(s)) for s in servers]
    return tuple(sorted(placed, key=sort_key))
