"""The narration of a guided demo: the step's title and what to look at, shown large.

It gets the rows the evidence leaves (LabScreen shares the height: the measures the
narration points at come first). When its bullets do not all fit, they come up a page at
a time over the step, whole bullets per page, and the border says which page is shown (a
fixed height used to drop the fourth bullet of `demo starvation` at 120x36, silently).
"""

from __future__ import annotations

import textwrap

from rich.text import Text
from textual.widgets import Static

from lab.scenarios import Scenario, Step

from .layout import Narration

BORDER = 2  # rows of its top and bottom border
PAGE_S = 5.0  # the least time a page stays (then the pages go round again)
LAST_STEP_PAGE_S = 8.0  # the last step keeps running: its pages turn every this many seconds

Line = tuple[str, str]  # text, style


class NarrationPanel(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.budget: int | None = None  # rows it may take (None: all it needs)
        self._step: tuple[Scenario, int] | None = None

    # -- what LabScreen asks to share the height ----------------------------------------------
    def need(self, width: int) -> Narration:
        """The rows it wants at `width` (tui.layout shares them), borders in."""
        if self._step is None:
            return Narration()
        scenario, index = self._step
        title, bullets = _lines(scenario, index, width)
        every = len(title) + sum(len(b) for b in bullets)
        longest = sorted((len(b) for b in bullets), reverse=True)[:2]
        return Narration(
            every=BORDER + every,
            comfort=BORDER + len(title) + sum(longest),  # two bullets a page
            floor=BORDER + len(title) + min(2, every - len(title)),
            least=BORDER + len(title) + min(1, every - len(title)),
        )

    def width(self) -> int:
        """Columns for text inside its border and padding."""
        return self.content_region.width or max(20, self.screen.size.width - 4)

    # -- drawing ------------------------------------------------------------------------------
    def show_step(
        self, scenario: Scenario, index: int, remaining_s: float | None, last: bool
    ) -> None:
        self._step = (scenario, index)
        step = scenario.steps[index]
        width = self.width()
        head = f"demo {scenario.name} · step {index + 1}/{len(scenario.steps)}"
        title, bullets = _lines(scenario, index, width)
        if not title:  # the step's title fits in the border
            head += f" · {step.title}"
        rows = (10_000 if self.budget is None else self.budget) - BORDER - len(title)
        pages = _pages(bullets, max(1, rows))
        page = _page_now(step, len(pages), remaining_s, last)
        self.border_title = head
        nav = (
            "starting…"
            if remaining_s is None
            else "last step: it keeps running · N goes back · q quits"
            if last
            else f"next step in {max(0.0, remaining_s):.0f} s · n next · N back"
        )
        if len(pages) > 1:
            nav = f"page {page + 1}/{len(pages)} · {nav}"
        self.border_subtitle = nav
        t = Text()
        for k, (text, style) in enumerate([*title, *pages[page]]):
            t.append(("\n" if k else "") + text, style=style)
        self.styles.height = BORDER + len(title) + (max(map(len, pages)) if pages else 0)
        self.update(t)


def _lines(scenario: Scenario, index: int, width: int) -> tuple[list[Line], list[list[Line]]]:
    """(the title's lines, unless it fits in the border; each bullet's wrapped lines)."""
    step: Step = scenario.steps[index]
    head = f"demo {scenario.name} · step {index + 1}/{len(scenario.steps)} · {step.title}"
    # the border's title has the panel's width less 6 (its corners and spaces): width - 2
    title: list[Line] = [] if len(head) <= width - 2 else _wrap(step.title, width, "bold")
    bullets = [_wrap(line, width, "", "• ") for line in step.narration]
    if step.fault is not None:
        bullets.append(_wrap(f"fault: {step.fault.describe()}", width, "magenta", "  "))
    bullets.append(_wrap(step.load_line, width, "dim", "  "))  # what runs, to reproduce it
    return title, bullets


def _wrap(text: str, width: int, style: str, lead: str = "") -> list[Line]:
    lines = textwrap.wrap(
        text, max(10, width), initial_indent=lead, subsequent_indent=" " * len(lead)
    )
    return [(line, style) for line in lines or [lead]]


def _pages(bullets: list[list[Line]], rows: int) -> list[list[Line]]:
    """Whole bullets per page of `rows` lines (a bullet longer than a page: split)."""
    pages: list[list[Line]] = [[]]
    for bullet in bullets:
        if pages[-1] and len(pages[-1]) + len(bullet) > rows:
            pages.append([])
        for line in bullet:
            if len(pages[-1]) == rows:
                pages.append([])
            pages[-1].append(line)
    return pages


def _page_now(step: Step, pages: int, remaining_s: float | None, last: bool) -> int:
    """The page to show: pages share the step's time in order (as the narration is read),
    each at least PAGE_S, going round again when the step outlasts them; the last step,
    which keeps running, turns them every LAST_STEP_PAGE_S."""
    if pages <= 1 or remaining_s is None:
        return 0
    elapsed = max(0.0, step.seconds - remaining_s)
    each = LAST_STEP_PAGE_S if last else max(PAGE_S, step.seconds / pages)
    return int(elapsed // each) % pages
