"""The narration of a guided demo: the step's title and what to look at, shown large."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from lab.scenarios import Scenario


class NarrationPanel(Static):
    def show_step(
        self, scenario: Scenario, index: int, remaining_s: float | None, last: bool
    ) -> None:
        step = scenario.steps[index]
        self.border_title = f"demo {scenario.name} · step {index + 1}/{len(scenario.steps)}"
        t = Text()
        t.append(step.title, style="bold")
        t.append(f"\n  {step.load_line}", style="dim")
        for line in step.narration:
            t.append("\n• ")
            t.append(line)
        if step.fault is not None:
            t.append(f"\n  fault: {step.fault.describe()}", style="magenta")
        if remaining_s is None:
            nav = "starting…"
        elif last:
            nav = "last step: it keeps running · N goes back · q quits"
        else:
            nav = f"next step in {max(0.0, remaining_s):.0f} s · n next · N back"
        self.border_subtitle = nav
        self.update(t)
