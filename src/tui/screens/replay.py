"""A recording on the main screen: play/pause, seek by seconds, step by frames."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from ..source import ReplaySource
from .lab import LabScreen


class ReplayScreen(LabScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "play", "Play/pause"),
        Binding("left_square_bracket", "seek(-5)", "-5s", key_display="["),
        Binding("right_square_bracket", "seek(5)", "+5s", key_display="]"),
        Binding("comma", "step(-1)", "-1 frame", show=False),
        Binding("full_stop", "step(1)", "+1 frame", show=False),
    ]

    def __init__(self, source: ReplaySource) -> None:
        super().__init__(source)
        self.replay = source

    def subtitle(self) -> str:
        src = self.replay
        mark = "▶" if src.playing else "⏸"
        model = self.last.model.name if self.last and self.last.model else ""
        return f"replay {src.name} · {model} · {mark} {src.position_s:.1f}/{src.length_s:.1f} s"

    def action_play(self) -> None:
        self.replay.toggle()
        self.update_header()

    def action_seek(self, seconds: float) -> None:
        self.replay.seek(seconds)
        self.draw(self.replay.next() if not self.replay.playing else self.replay.current)

    def action_step(self, frames: int) -> None:
        self.replay.playing = False
        self.replay.step(frames)
        self.draw(self.replay.next())
