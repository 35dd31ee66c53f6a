"""Messages the widgets send up to the app (widgets never act on a session themselves)."""

from __future__ import annotations

from textual.message import Message

from values.snapshot import WorkerKey


class WorkerSelected(Message):
    """The user moved the grid cursor or the table row onto a worker."""

    def __init__(self, key: WorkerKey) -> None:
        super().__init__()
        self.key = key
