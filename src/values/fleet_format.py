"""The fleet's figures as the text table and the TUI draw them, one cell each.

The cells read what the ranking (judging.fleet_rank) put in each server's `Standing`:
which spread it judged, and why an agent's figures are not current. Unknown is drawn as
"?" or the word "unknown" (throttling, where the exporter has no cpu.stat counters), never
as 0; a
spread over too few events to judge says "(few)".
"""

from __future__ import annotations

from collections.abc import Sequence

from .fleet import FleetServer, Point, WorkerHistory

COLUMNS = (
    "#",
    "host",
    "server",
    "port",
    "pid",
    "workers",
    "imbalance",
    "queue",
    "throttled",
    "diagnoses",
    "age",
)
LEFT = frozenset({"host", "server", "imbalance", "diagnoses"})
SHORT = {"accepts": "acc", "connections": "conn", "cpu": "cpu"}
BLOCKS = "▁▂▃▄▅▆▇█"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def spread_cell(s: FleetServer) -> str:
    """The spread the ranking judged ('conn 80% of 4'), else the accepts' or connections'
    the agent exported with '(few)': too few events to judge; '?' when none."""
    judged = s.standing.spread if s.standing is not None else None
    imb = s.spread(judged) if judged is not None else None
    few = ""
    if imb is None:
        imb = next(
            (i for m in ("accepts", "connections") if (i := s.spread(m)) and i.top_share), None
        )
        few = " (few)"
    if imb is None or imb.top_share is None:
        return "?"
    n = f" of {imb.workers}" if imb.workers is not None else ""
    return f"{SHORT.get(imb.metric, imb.metric)} {_pct(imb.top_share)}{n}{few}"


def queue_cell(s: FleetServer) -> str:
    if not s.listeners:
        return "?"
    full = max(s.listeners, key=lambda ln: ln.fill or 0.0)  # the fullest, as ranked
    limit = "?" if full.limit is None else str(full.limit)
    more = f" +{len(s.listeners) - 1}" if len(s.listeners) > 1 else ""
    return f"{full.queue}/{limit}{more}"


def throttled_cell(s: FleetServer) -> str:
    """'12% of 0.5 core', '0% no limit' (cpu.stat counts, no quota on its cgroups), or
    'unknown' (no cpu.stat counters exported)."""
    if s.throttled is None:
        return "unknown"
    if s.cpu_limit is None:
        return f"{_pct(s.throttled)} no limit"
    return f"{_pct(s.throttled)} of {s.cpu_limit:.2g} core"


def diagnoses_cell(s: FleetServer) -> str:
    gone = s.standing.not_seen if s.standing is not None else None
    rules = [d.rule for d in s.diagnoses]
    if gone:
        return ", ".join([gone, *rules])
    return ", ".join(rules) if rules else "none"


def age_cell(s: FleetServer) -> str:
    return "?" if s.age_s is None else f"{max(0.0, s.age_s):.0f} s"


def cells(rank: int, s: FleetServer) -> list[str]:
    sid = s.id
    return [
        str(rank),
        sid.host or sid.instance,
        sid.server or "?",
        ",".join(map(str, sid.ports)) or "?",
        "?" if sid.root_pid is None else str(sid.root_pid),
        "?" if s.n_workers is None else str(s.n_workers),
        spread_cell(s),
        queue_cell(s),
        throttled_cell(s),
        diagnoses_cell(s),
        age_cell(s),
    ]


def severity_of(s: FleetServer) -> str | None:
    return s.standing.severity if s.standing is not None else None


# -- history ------------------------------------------------------------------------------


def sparkline(
    points: Sequence[Point],
    width: int,
    top: float | None = None,
    span: tuple[float, float] | None = None,
) -> str:
    """`points` over `width` characters, ▁ (0) .. █ (`top`, default their max), each the
    largest value in its slice of `span` (start, end: unix seconds; default the points'
    own); a space where there was no sample (unknown is not drawn as the lowest bar)."""
    if not points or width <= 0:
        return ""
    start, end = span if span is not None else (points[0][0], points[-1][0])
    known = [v for _, v in points if v is not None]
    peak = top if top is not None else max(known, default=0.0)
    slots: list[float | None] = [None] * width
    length = max(end - start, 1e-9)
    for t, v in points:
        if v is None or not start <= t <= end:
            continue
        i = min(width - 1, int((t - start) / length * width))
        slots[i] = v if slots[i] is None else max(slots[i] or 0.0, v)
    out = []
    for v in slots:
        if v is None:
            out.append(" ")
        elif peak <= 0:
            out.append(BLOCKS[0])
        else:
            out.append(BLOCKS[min(len(BLOCKS) - 1, round(v / peak * (len(BLOCKS) - 1)))])
    return "".join(out)


def last_value(points: Sequence[Point]) -> float | None:
    return next((v for _, v in reversed(points) if v is not None), None)


HISTORY_COLUMNS = ("pid", "role", "conns", "", "CPU %", "", "acc/s", "")
HISTORY_SERIES = ("connections", "cpu_percent", "accepts_per_s")


# the least top of each scale: a worker at 0.03% CPU is idle, not a bar half way up
SCALE_FLOOR = {"connections": 1.0, "cpu_percent": 10.0, "accepts_per_s": 1.0}


def peaks(workers: Sequence[WorkerHistory]) -> dict[str, float]:
    """Each series' largest value over every worker, at least its SCALE_FLOOR: one scale
    for all the rows, so the busiest worker's line stands taller than the others'."""
    out = {}
    for name in HISTORY_SERIES:
        known = [v for w in workers for _, v in getattr(w, name) if v is not None]
        out[name] = max([*known, SCALE_FLOOR[name]])
    return out


def history_cells(
    w: WorkerHistory, width: int, top: dict[str, float], span: tuple[float, float]
) -> list[str]:
    """pid, role, then per series its latest value and its line over the range ("?" and
    no line for a series the agent does not export: accepts when attached without them)."""
    out = [str(w.pid) if w.tid == w.pid else f"{w.pid}/{w.tid}", w.role]
    for name, fmt in zip(HISTORY_SERIES, ("{:.0f}", "{:.1f}", "{:.1f}"), strict=True):
        points = getattr(w, name)
        v = last_value(points)
        out.append("?" if v is None else fmt.format(v))
        out.append(sparkline(points, width, top.get(name), span))
    return out
