"""A recording on the main screen: play/pause, seek by seconds, step by frames."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from ..scoreboard_legend import ATTACH_LEGEND
from ..source import ReplaySource
from .lab import LabScreen


class ReplayScreen(LabScreen):
    source: ReplaySource

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "play", "Play/pause"),
        Binding("left_square_bracket", "seek(-5)", "-5s", key_display="["),
        Binding("right_square_bracket", "seek(5)", "+5s", key_display="]"),
        Binding("comma", "step(-1)", "-1 frame", show=False),
        Binding("full_stop", "step(1)", "+1 frame", show=False),
    ]

    def __init__(self, source: ReplaySource) -> None:
        super().__init__(source)

    def legend_extra(self) -> tuple[tuple[str, str], ...]:
        first = self.source.snapshots[0].model
        attached = first is not None and first.accepts_method is not None
        return ATTACH_LEGEND if attached else ()

    def no_load(self) -> tuple[str, str]:
        return ("no load in this recording", "")

    def subtitle(self) -> str:
        replay = self.source
        mark = "▶" if replay.playing else "⏸"
        model = self.last.model.name if self.last and self.last.model else ""
        where = f"{replay.position_s:.1f}/{replay.length_s:.1f} s"
        return f"replay {replay.name} · {model} · {mark} {where}"

    def action_play(self) -> None:
        self.source.toggle()
        self.update_header()

    def action_seek(self, seconds: float) -> None:
        self.source.seek(seconds)
        self.draw(self.source.next() if not self.source.playing else self.source.current)

    def action_step(self, frames: int) -> None:
        self.source.playing = False
        self.source.step(frames)
        self.draw(self.source.next())
