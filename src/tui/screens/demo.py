"""A guided demo on the live screen: the narration on top, each step a restart of the
session with the step's model and load, its fault applied on schedule, n/N to move."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widget import Widget

from lab.player import DemoPlayer
from lab.scenarios import Scenario, apply_fault

from ..narration_panel import NarrationPanel
from ..source import LiveSource
from .live import LiveScreen


class DemoScreen(LiveScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "demo_step(1)", "Next step"),
        Binding("N", "demo_step(-1)", "Prev step", show=False),
    ]

    def __init__(self, source: LiveSource, scenario: Scenario) -> None:
        super().__init__(source)
        self.player = DemoPlayer(scenario)

    def compose_top(self) -> Iterable[Widget]:
        yield NarrationPanel(id="narration")

    async def start(self) -> bool:
        if not await super().start():
            return False
        self.player.begin()
        return True

    def action_demo_step(self, delta: int) -> None:
        if self.player.go(delta):
            self._start_step()

    def _start_step(self) -> None:
        player = self.player
        step = player.step
        self.source.log("demo", f"step {player.index + 1}: {step.title}")
        self.status(f"starting {step.config.model} for step {player.index + 1}…")
        level = player.level(step)
        self.control(
            lambda: self.session.restart(config=step.config, level=level), "step did not start"
        )

    def after_control(self) -> None:
        super().after_control()
        if self.player.started is None and self.busy is None:
            self.player.begin()

    def tick(self) -> None:
        player = self.player
        self.query_one(NarrationPanel).show_step(
            player.scenario, player.index, player.remaining(), player.last
        )
        fault = player.take_fault()
        if fault is not None:
            self.source.log("demo", "demo: " + apply_fault(self.session, fault))
        elif player.advance_due():
            player.go(1)
            self._start_step()
