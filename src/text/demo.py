"""The headless demo's live view drawn with rich: the step, its narration so far, the
client's figures, the snapshot (the `attach` table) and whether the expected diagnoses
have shown yet."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from lab.scenarios import Scenario, Step
from values.snapshot import Snapshot
from values.units import ms

from .attach import render


def demo_view(
    scenario: Scenario,
    i: int,
    step: Step,
    snap: Snapshot,
    t: float,
    seen: dict[str, float],
) -> Group:
    head = Text()
    head.append(f"demo {scenario.name}", style="bold")
    head.append(f"  step {i + 1}/{len(scenario.steps)}: {step.title}")
    head.append(f"  {t:4.0f}/{step.seconds:g} s", style="dim")
    head.append(f"\n{step.load_line}", style="dim")
    if step.fault is not None:
        head.append(f"\nfault: {step.fault.describe()}", style="magenta")
    narr = Text()
    # the narration's lines come up one after another over the step's first two thirds
    shown = 1 + int(t / max(1.0, step.seconds * 0.66 / max(1, len(step.narration))))
    for j, line in enumerate(step.narration):
        style = "bold" if j == min(shown, len(step.narration)) - 1 else "dim"
        if j < shown:
            narr.append(f"{j + 1}. {line}\n", style=style)
    c = snap.client
    client = Text()
    if c is not None:
        # latency as the TUI shows it: the requests still waiting count at their age
        lat = c.waiting_latency
        oldest = f", oldest {ms(c.oldest_wait_ms)}" if c.oldest_wait_ms is not None else ""
        client.append(
            f"client: {c.rps:.0f} req/s  latency p99 {ms(lat.p99 if lat.count else None)}  "
            f"connect p99 {ms(c.connect_ms.p99 if c.connect_ms.count else None)}  "
            f"waiting {c.in_flight}{oldest}  errors {c.error_count}  "
            f"open {c.open_connections}"
        )
    want = Text()
    for rule in step.expect:
        if rule in seen:
            want.append(f"expected {rule}: seen at {seen[rule]:.1f} s  ", style="green")
        else:
            want.append(f"expected {rule}: not yet  ", style="yellow")
    for e in step.shows:
        if e.key in seen:
            want.append(f"{e.says}: seen at {seen[e.key]:.1f} s  ", style="green")
        else:
            want.append(f"{e.says}: not yet  ", style="yellow")
    return Group(head, narr, client, render(snap), want)
