"""The fix screen (f on the live lab): the setup on screen and its remedy for the diagnosis
on screen, run one after the other under the same load (a fresh server each, the lab's own
stopped meanwhile so that they have the machine), then side by side with the verdict
(lab.fix.run_fix: the engine of `serverscope fix` and `serverscope diff`).

Escape goes back to the lab as it was; `a` switches the lab to the remedy. The runs are
recorded in a temporary directory, named on screen for `serverscope diff`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from lab.fix import Outcome, run_fix
from lab.headless import run_headless
from lab.scenarios import Fault
from lab.server import ServerConfig
from lab.summary import RunSummary
from loadgen.levels import LoadLevel
from values.snapshot import SAMPLE_PERIOD_S, Snapshot

if TYPE_CHECKING:
    from judging.verdict_values import Row, Verdict

STYLES = {"better": "bold green", "worse": "bold red"}
Runner = Callable[..., RunSummary]  # lab.headless.run_headless's shape


class FixScreen(Screen[ServerConfig | None]):
    """Dismisses with the remedy's config (`a`: apply it in the lab) or None (escape)."""

    DEFAULT_CSS = """
    FixScreen #fix-body { padding: 0 1; }
    FixScreen .fix-line { height: auto; margin-bottom: 1; }
    FixScreen #fix-verdict { text-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back to the lab"),
        Binding("a", "apply", "Apply the remedy"),
    ]

    def __init__(
        self,
        config: ServerConfig,
        level: LoadLevel,
        seen: Sequence[tuple[str, str]],
        *,
        period: float = SAMPLE_PERIOD_S,
        runner: Runner | None = None,
        fault: Fault | None = None,
    ) -> None:
        super().__init__()
        self.fault = fault  # done to both runs (the worker paused on screen)
        self.config, self.level, self.seen = config, level, list(seen)
        self.period = period
        self.runner = runner if runner is not None else run_headless
        self.stop = threading.Event()  # set on leaving: a run still going ends at once
        self.done = threading.Event()  # the runs are over and their processes gone
        self.outcome: Outcome | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="serverscope-fix-"))

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="fix-body"):
            yield Static(id="fix-head", classes="fix-line")
            yield Static("starting…", id="fix-progress", classes="fix-line")
            yield Static(id="fix-table", classes="fix-line")
            yield Static(id="fix-verdict", classes="fix-line")
            yield Static(id="fix-files", classes="fix-line")
        yield Footer()

    def on_mount(self) -> None:
        rule, message = self.seen[0] if self.seen else ("", "")
        self.query_one("#fix-head", Static).update(
            Text(f"fix: {message or rule}\n", style="yellow")
            + Text(f"{self.level.describe()}, {self.level.duration:g} s each")
            + Text(f"; in both: {self.fault.describe()}" if self.fault else "")
        )
        self._run()

    def on_unmount(self) -> None:
        self.stop.set()

    # -- the runs (a thread: each blocks for its duration) ------------------------------
    @work(thread=True, exclusive=True, group="fix")
    def _run(self) -> None:
        paths = (str(self.folder / "before.jsonl"), str(self.folder / "after.jsonl"))
        try:
            self.outcome = run_fix(
                self.config,
                self.level,
                paths,
                self._one,
                seen=self.seen,
                judge=self._judge,
                fault=self.fault,
            )
        except _Left:
            return
        except Exception as e:  # never the app's end: said on screen instead
            self.outcome = Outcome(self.config, self.level, paths, problems=[f"fix failed: {e}"])
        finally:
            self._drop_unjudged()
            self.done.set()
        self._later(self.show, self.outcome)

    def _drop_unjudged(self) -> None:
        """The recordings stay only with the verdict that names them (a temporary
        directory per `f` else: 191 of them seen, up to 1.6 MB each)."""
        if self.outcome is None or self.outcome.verdict is None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _one(self, cfg: ServerConfig, record: str, title: str) -> RunSummary:
        if self.stop.is_set():
            raise _Left
        began = time.monotonic()
        self._later(self._progress, f"{title}: starting {cfg.model}…")

        def progress(snap: Snapshot, elapsed: float) -> None:
            self._later(self._progress, f"{title}: {elapsed:.0f} s of {self.level.duration:g} s")

        summary = self.runner(
            cfg,
            self.level,
            period=self.period,
            record=record,
            stop=self.stop,
            on_sample=progress,
            faults=(self.fault,) if self.fault else (),
        )
        self._later(self._progress, f"{title}: done in {time.monotonic() - began:.0f} s")
        return summary

    def _judge(self, before: str, after: str) -> Verdict:
        from judging.verdict import judge_files  # (numpy loads here, not with the TUI)

        self._later(self._progress, "judging the two recordings…")
        return judge_files(before, after)

    def _later(self, fn: Callable[..., object], *args: object) -> None:
        """Call fn on the app's loop, unless the app is gone."""
        if self.stop.is_set():
            return
        try:
            self.app.call_from_thread(fn, *args)
        except RuntimeError:  # the app has stopped
            pass

    # -- drawing ------------------------------------------------------------------------
    def _progress(self, text: str) -> None:
        self.query_one("#fix-progress", Static).update(text)

    def show(self, out: Outcome) -> None:
        if out.remedy is not None:
            self._progress(f"remedy: {out.remedy.name}: {out.remedy.does}")
        if out.verdict is not None:
            self.query_one("#fix-table", Static).update(Fitted(out.verdict))
        lines = Text()
        for note in out.notes:
            lines += Text(f"note: {note}\n", style="yellow")
        for problem in out.problems:
            lines += Text(f"{problem}\n", style="bold red")
        style = "bold green" if out.verdict and out.verdict.differences else "bold"
        lines += Text("verdict: ", style="bold") + Text(out.headline(), style=style)
        self.query_one("#fix-verdict", Static).update(lines)
        if out.verdict is not None:
            before, after = out.paths
            self.query_one("#fix-files", Static).update(
                Text(f"recorded: serverscope diff {before} {after}", style="dim")
            )

    # -- keys ---------------------------------------------------------------------------
    def action_back(self) -> None:
        self.stop.set()
        self.dismiss(None)

    def action_apply(self) -> None:
        out = self.outcome
        if out is None or out.after_config is None:
            self.notify("no remedy has run yet", severity="warning")
            return
        self.stop.set()
        self.dismiss(out.after_config)


class _Left(Exception):
    """The user left the screen before a run began."""


# the narrowest each column may get when the screen is narrow (its longest word or so):
# figure, before, after ("1,022"), change ("(-0.49..-0.46)"), p ("p = 0.0014"), verdict
FLOORS = (10, 6, 6, 14, 10, 11)
HEADS = ("figure", "before", "after", "change", "p (Holm)", "verdict")


class Fitted:
    """The verdict's table at the width it is drawn at: rich alone evens out the wrapping
    columns' widths, so at 120 columns the verdict was left 6 cells ("no signi… diffe…");
    here the widest columns give way first, none below its floor."""

    def __init__(self, v: Verdict) -> None:
        self.v = v

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield table(self.v, options.max_width)


def _shown(v: Verdict) -> list[Row]:
    return [r for r in v.rows if not (r.shown == ("-", "-") and not r.tested)]


def _cells(r: Row) -> tuple[str, ...]:
    return (r.label, *r.shown, r.change_text(), r.p_text(), r.direction)


def widths(rows: Sequence[Sequence[str]], room: int) -> list[int] | None:
    """Each column's width (without padding) so that the table fits `room` cells, or
    None when it fits as it is."""
    natural = [max(len(c) for c in [head, *(r[i] for r in rows)]) for i, head in enumerate(HEADS)]
    frame = 3 * len(HEADS) + 1  # a border and a cell's padding each side
    over = sum(natural) + frame - room
    if over <= 0:
        return None
    out = list(natural)
    for _ in range(over):
        spare = [w - f for w, f in zip(out, FLOORS, strict=True)]
        if max(spare) <= 0:
            break
        out[spare.index(max(spare))] -= 1
    return out


def table(v: Verdict, room: int | None = None) -> Table:
    shown = _shown(v)
    fixed = widths([_cells(r) for r in shown], room) if room is not None else None
    t = Table(title="before and after", title_justify="left", expand=False)
    for i, head in enumerate(HEADS):
        t.add_column(
            head,
            justify="left" if head in ("figure", "verdict") else "right",
            no_wrap=head == "p (Holm)",
            width=fixed[i] if fixed else None,
        )
    for r in shown:
        style = STYLES.get(r.direction, "" if r.tested else "dim")
        t.add_row(*_cells(r)[:-1], Text(r.direction, style=style))
    return t
