"""The selected worker in detail, over the main screen (Enter on a worker; Enter or
Escape closes it): its state, its current request and client, its connections
(tui.worker_detail). Drawn again with every frame the main screen draws, so ages grow
while it is open; it follows the worker selected when it opened."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from values.snapshot import Snapshot, WorkerKey

from .. import worker_detail


class WorkerScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    WorkerScreen { align: center middle; }
    WorkerScreen > #detail-box {
        width: 96%; max-width: 120; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, key: WorkerKey, snap: Snapshot) -> None:
        super().__init__()
        self.key = key
        self.snap = snap

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-box"):
            yield Static(id="detail")

    def on_mount(self) -> None:
        self.query_one("#detail-box").border_title = "worker"
        self.query_one("#detail-box").border_subtitle = "Enter/Esc close"
        self.show(self.snap)

    def show(self, snap: Snapshot) -> None:
        self.snap = snap
        if not self.is_mounted:
            return  # drawn once mounted
        w = next((x for x in snap.workers if x.key == self.key), None)
        if w is None:
            text = Text("this worker is gone (its slot has a new worker, or it exited)")
        else:
            text = Text("\n").join(worker_detail.lines(w, snap))
        self.query_one("#detail", Static).update(text)
