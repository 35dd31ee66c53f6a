"""The selected worker in detail, over the main screen (Enter on a worker; Enter or
Escape closes it): its state, its current request and client, its connections
(tui.worker_detail). Drawn again with every frame the main screen draws, so ages grow
while it is open; it follows the worker selected when it opened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from values.snapshot import Snapshot, WorkerKey

from .. import worker_detail, worker_stack


class WorkerScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "dismiss", "Close"),
        Binding("d", "stack", "Stack", tooltip="read this worker's stack now"),
    ]
    DEFAULT_CSS = """
    WorkerScreen { align: center middle; }
    WorkerScreen > #detail-box {
        width: 96%; max-width: 120; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(
        self,
        key: WorkerKey,
        snap: Snapshot,
        stacks: worker_stack.Stacks | None = None,
        *,
        live: bool = False,
        take_stack: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.key = key
        self.snap = snap
        self.stacks = stacks  # the latest stack of each worker (d, or taken by itself)
        self.live = live
        self.take_stack = take_stack

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-box"):
            yield Static(id="detail")

    def on_mount(self) -> None:
        self.query_one("#detail-box").border_title = "worker"
        self.query_one("#detail-box").border_subtitle = "d stack · Enter/Esc close"
        self.show(self.snap)

    def show(self, snap: Snapshot) -> None:
        self.snap = snap
        if not self.is_mounted:
            return  # drawn once mounted
        w = next((x for x in snap.workers if x.key == self.key), None)
        if w is None:
            text = Text("this worker is gone (its slot has a new worker, or it exited)")
        else:
            out = worker_detail.lines(w, snap)
            if self.stacks is not None:
                # ages against the clock live, against the snapshot in a replay
                now = time.monotonic() if self.live else snap.time
                taken = self.stacks.get(self.key)
                out += [Text(), *worker_stack.lines(taken, now, live=self.live)]
            text = Text("\n").join(out)
        self.query_one("#detail", Static).update(text)

    def action_stack(self) -> None:
        if self.take_stack is not None:
            self.take_stack()
