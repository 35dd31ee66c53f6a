"""The workers panel's title with the CPU limit on the workers' cgroup and how often it
throttled them over the window (values.cgroupcpu.limit_line): 'workers · CPU limit 0.2
core, throttled in 62% of periods'; plain 'workers' without a limit."""

from __future__ import annotations

from values.cgroupcpu import limit_line

from .frame import Frame

TITLE = "workers"


def workers_title(frame: Frame) -> str:
    snap = frame.snapshot
    since = snap.time - snap.window_s
    history = [s.cpu_cgroups for s in frame.history if s.time > since] or [snap.cpu_cgroups]
    line = limit_line(snap.cpu_cgroups, {w.pid for w in snap.live_workers}, history, detail=False)
    return TITLE if line is None else f"{TITLE} · {line}"
