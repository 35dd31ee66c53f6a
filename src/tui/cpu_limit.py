"""The workers panel's title with the CPU limit on the workers' cgroup and how often it
throttled them over the window (values.cgroupcpu.limit_line): 'workers · CPU limit 0.2
core, throttled in 62% of periods'; plain 'workers' without a limit. And the worker
detail's line on the worker's cgroup."""

from __future__ import annotations

from rich.text import Text

from values.cgroupcpu import by_pid, cores_text, limit_line
from values.snapshot import Snapshot, WorkerSample

from .frame import Frame

TITLE = "workers"


def workers_title(frame: Frame) -> str:
    snap = frame.snapshot
    since = snap.time - snap.window_s
    history = [s.cpu_cgroups for s in frame.history if s.time > since] or [snap.cpu_cgroups]
    line = limit_line(snap.cpu_cgroups, {w.pid for w in snap.live_workers}, history, detail=False)
    return TITLE if line is None else f"{TITLE} · {line}"


def worker_line(w: WorkerSample, snap: Snapshot) -> Text | None:
    """The worker detail's line on its cgroup: its path, the limit on it (and where it is
    set) and the last interval's throttling, as the cgroup's cpu.stat counted it (per
    cgroup: the kernel counts no throttling per process). None when not read."""
    cg = by_pid(snap.cpu_cgroups).get(w.pid)
    if cg is None:
        return None
    where = f"cgroup {cg.path} (v{cg.version})"
    if cg.limited is None:
        return Text(f"{where}: CPU limit unknown (its files could not be read)", style="dim")
    if cg.cores is None:
        return Text(f"{where}: no CPU limit")
    text = Text(f"{where}: CPU limit {cores_text(cg.cores)}")
    if cg.limit_path and cg.limit_path != cg.path:
        text.append(f" (set on {cg.limit_path})")
    share = cg.throttled_fraction
    if share is not None:
        text.append(
            f"; throttled in {100 * share:.0f}% of periods in the last interval "
            f"({cg.throttled_delta}/{cg.periods_delta}, cpu.stat)",
            style="bold yellow" if share > 0 else "",
        )
    return text
