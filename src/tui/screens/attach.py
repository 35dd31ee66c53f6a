"""`serverscope attach --port P | --pid PID`: the lab's monitor on somebody else's server.

The same panels as the live lab, fed by a LiveSource over the lab's Attachment, but no
model or load chooser and no faults at all (no pause, kill or burn): the server is not
ours, so the only keys change what is drawn. `t` unfolds the per-thread rows (folded
under their process by default, the process row's # says `8t`), space freezes the
display. What the outside view cannot know is drawn as unknown ("-", "?"), never 0: the
accepts method (exact with eBPF, or an estimate from new connections) is in the
subtitle. Quitting stops only what serverscope started (bpftrace, the mod_status poller,
a --load generator); the server keeps running.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import SystemCommand
from textual.binding import Binding, BindingType

from lab.attach import NOT_ALLOWED

from ..diagnosis_banner import DiagnosisBanner
from ..scoreboard_legend import ATTACH_LEGEND
from ..source import LiveSource
from .lab import LabScreen


class AttachScreen(LabScreen):
    source: LiveSource

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "threads", "Threads", tooltip="unfold / fold the per-thread rows"),
        Binding("space", "freeze", "Freeze"),
        Binding("f", "no_faults", "No faults: not our server"),
    ]

    def __init__(self, source: LiveSource, *, threads: bool = False) -> None:
        super().__init__(source)
        self.busy = "attaching…"
        self.threads = threads  # `attach --threads`: start unfolded

    def legend_extra(self) -> tuple[tuple[str, str], ...]:
        return ATTACH_LEGEND

    def no_load(self) -> tuple[str, str]:
        return ("no load of ours", "--load PRESET drives one")

    def subtitle(self) -> str:
        snap = self.last
        m = snap.model if snap is not None else None
        if m is None:
            return "attach · " + (self.source.ended or "attaching…")
        parts = [f"attached: {m.server or m.program or m.name}", f"root pid {m.root_pid}"]
        parts.append(f"accepts {m.accepts_method or '?'}")
        where = m.placement
        if where is not None and where.elsewhere:
            parts.append(where.container or f"netns {where.netns}")
        if m.access_note:  # what this user may not read is unknown: say why, in short
            parts.append(f"sockets unreadable: {NOT_ALLOWED}")
        if self.source.ended:
            parts.append("server gone")
        elif self.frozen:
            parts.append("display frozen")
        if self.threads:
            parts.append("threads unfolded")
        cost = self.sampling_cost()
        if cost and not self.source.ended:
            parts.append(cost)
        return " · ".join(parts)

    def tick(self) -> None:
        if self.source.ended and self.busy is None:
            self.status(f"{self.source.ended} (q quits)")
            self.update_header()

    def closing(self) -> None:
        self.query_one(DiagnosisBanner).status("detaching (the server keeps running)…")

    def action_threads(self) -> None:
        self.threads = not self.threads
        self.update_header()
        self.redraw()

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self.update_header()

    def action_no_faults(self) -> None:
        self.notify(
            "attached to a server serverscope did not start: no pause, kill or burn here "
            "(run `serverscope` for the lab's own models)"
        )

    def system_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Fold / unfold the thread rows", "t", self.action_threads)
        yield SystemCommand("Freeze / resume the display", "space", self.action_freeze)
