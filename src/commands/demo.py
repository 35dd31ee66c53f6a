"""`serverscope demo NAME`: play a guided demo in the TUI, or (--headless) with a rich live
view; both drive the lab's one player (`lab.player`)."""

from __future__ import annotations

import argparse
import threading
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from lab.catalogue import get, list_lines
from lab.player import StepResult, play
from lab.scenarios import Scenario, Step, too_short, with_seconds
from plumbing.signals import stop_on
from text.attach import wanted_width
from text.demo import demo_view
from values.snapshot import Snapshot

from .common import EXIT_FAILED, EXIT_OK, add_width_arg, fail, fit_console, seconds

PROG = "serverscope demo"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="play a guided demo (see --list)",
        description="Play a guided demo: each step starts a model, a load and a fault, and "
        "says what to look at. Plays in the TUI (--headless: a live text view).",
    )
    p.add_argument("name", nargs="?", help="demo name (see --list)")
    p.add_argument("--list", action="store_true", help="list the demos and exit")
    p.add_argument(
        "--seconds",
        type=seconds(at_least=1, at_most=3600),
        help="length of every step, seconds (default: each step's)",
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="the live text view even if the TUI exists (piped or in a file: each step's "
        "last view, one after another)",
    )
    add_width_arg(p)
    return p


def command(a: argparse.Namespace) -> int:
    if a.list:
        print("\n".join(list_lines()))
        return EXIT_OK
    if not a.name:
        return fail(PROG, "name a demo (serverscope demo --list shows them)")
    try:
        scenario = get(a.name)
    except KeyError as e:
        return fail(PROG, e.args[0])
    if a.seconds is not None:
        why = too_short(scenario, a.seconds)
        if why is not None:
            return fail(PROG, why)
        scenario = with_seconds(scenario, a.seconds)
    if a.headless:
        return play_live(scenario, width=a.width)
    from tui.app import run_demo  # late: Textual loads only when a TUI opens

    code, error = run_demo(scenario)
    if error:
        fail(PROG, error)
    return code


def play_live(scenario: Scenario, console: Console | None = None, width: int | None = None) -> int:
    """The headless player with a rich live view: narration, the snapshot, diagnoses. Not
    on a terminal (a pipe, a file), where a live view keeps only its last frame (the last
    step's), each step's last view is printed as the step ends."""
    console = console or Console()
    n = len(scenario.steps)
    seen: dict[str, float] = {}
    last: list[Group | None] = [None]  # the running step's latest view

    def view_of(i: int, snap: Snapshot, t: float) -> Group:
        fit_console(console, width, lambda: wanted_width(snap))
        return demo_view(scenario, i, scenario.steps[i], snap, t, seen)

    def note(i: int, snap: Snapshot, t: float) -> None:
        """What has shown so far: each diagnosis, and the figures the narration promises."""
        for d in snap.diagnoses:
            seen.setdefault(d.rule, t)
        for e in scenario.steps[i].shows:
            if e.key not in seen and e.holds(snap):
                seen[e.key] = t

    with stop_on(threading.Event()) as stop:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False, screen=False) as live:

                def on_step(i: int, step: Step) -> None:
                    seen.clear()
                    live.update(Text(f"step {i + 1}/{n}: starting {step.title} ..."), refresh=True)

                def on_sample(i: int, snap: Snapshot, t: float) -> None:
                    note(i, snap, t)
                    live.update(view_of(i, snap, t), refresh=True)

                results = play(scenario, on_step=on_step, on_sample=on_sample, stop=stop)
        else:

            def step_done() -> None:
                if last[0] is not None:
                    console.print(last[0])
                    console.print()
                last[0] = None

            def on_step_printed(i: int, step: Step) -> None:
                step_done()
                seen.clear()

            def on_sample_kept(i: int, snap: Snapshot, t: float) -> None:
                note(i, snap, t)
                last[0] = view_of(i, snap, t)

            results = play(scenario, on_step=on_step_printed, on_sample=on_sample_kept, stop=stop)
            step_done()
    _print_results(console, scenario, results)
    ok = results and all(r.error is None for r in results)
    return EXIT_OK if ok else EXIT_FAILED


def _print_results(console: Console, scenario: Scenario, results: list[StepResult]) -> None:
    console.print()
    console.print(Text(f"demo {scenario.name}", style="bold"))
    for r in results:
        mark = "[green]ok[/]" if r.ok else "[red]not shown[/]"
        seen_text = ", ".join(f"{k} at {v:g} s" for k, v in r.seen.items()) or "no diagnosis"
        console.print(f"  step {r.index + 1}: {r.step.title}: {seen_text}  {mark}")
        says = {e.key: e.says for e in r.step.shows}
        shown = [f"{says[k]} at {v:g} s" for k, v in r.shown.items()]
        shown += [f"{e} not seen" for e in r.unshown]
        if shown:
            console.print(f"    {', '.join(shown)}")
        if r.error:
            console.print(f"    [red]{r.error}[/]")
