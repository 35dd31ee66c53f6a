"""A Static that redraws only when what it shows changed (the panels are fed 4 times a
second, mostly with the same content), and lays the screen out again only when its height
may have changed."""

from __future__ import annotations

import re

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import Static

_WORD = re.compile(r"\S")


def text_key(t: Text) -> tuple[object, ...]:
    """What a Text shows: its characters, styles and layout options."""
    return (t.plain, t.style, tuple(t.spans), t.justify, t.overflow, t.no_wrap, t.end)


def line_count(t: Text) -> int:
    """The height of a Text that does not wrap."""
    return t.plain.count("\n") + 1


def text_shape(t: Text) -> str:
    """Where a Text's words and line breaks are: the same shape wraps to the same height."""
    return _WORD.sub("x", t.plain)


class QuietStatic(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: object = None
        self._height: object = None
        self._subtitle: str | None = None

    def show_content(
        self, content: RenderableType, *, key: object = None, height: object = None
    ) -> bool:
        """Show `content` unless it is what is shown already. `key` identifies it (by
        default: a Text's own `text_key`; a str itself); `height`, anything equal from one
        content to the next only when their heights are (`line_count`, `text_shape`):
        then the screen is not laid out again. Returns whether the widget is redrawn."""
        if key is None:
            key = text_key(content) if isinstance(content, Text) else content
        if key == self._shown:
            return False
        self._shown = key
        layout = height is None or height != self._height
        self._height = height
        self.update(content, layout=layout)
        return True

    def set_subtitle(self, subtitle: str | None) -> None:
        """The border's subtitle (a redraw only when it changed)."""
        if subtitle != self._subtitle:
            self._subtitle = subtitle
            self.border_subtitle = subtitle
