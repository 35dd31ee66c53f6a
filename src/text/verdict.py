"""A verdict drawn with rich (`serverscope diff`, `serverscope fix`): the figures side by
side, each change with its 95% interval and Holm-adjusted p, the workers' shares, the
diagnoses on each side, how it was judged, and the verdict in one line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from judging.verdict_values import Side, Verdict

STYLES = {"better": "bold green", "worse": "bold red"}


def table(v: Verdict, *, before: str = "before", after: str = "after") -> Table:
    t = Table(title="before and after", title_justify="left")
    t.add_column("figure", no_wrap=True)
    t.add_column(before, justify="right", no_wrap=True)
    t.add_column(after, justify="right", no_wrap=True)
    t.add_column("change (95% interval)", justify="right", no_wrap=True)
    t.add_column("p (Holm)", justify="right", no_wrap=True)
    t.add_column("verdict")
    for r in v.rows:
        if r.before is None and r.after is None and r.shown == ("-", "-"):
            continue  # measured on neither side: one line under the table says which
        t.add_row(
            r.label,
            r.shown[0],
            r.shown[1],
            r.change_text(),
            r.p_text(),
            Text(r.direction, style=STYLES.get(r.direction, "dim" if not r.tested else "")),
        )
    return t


def shares_line(what: str, b: tuple[float, ...], a: tuple[float, ...], limit: int = 8) -> str:
    def fmt(xs: tuple[float, ...]) -> str:
        if not xs:
            return "unknown"
        text = " ".join(f"{100 * x:.0f}%" for x in xs[:limit])
        return text + (f" (+{len(xs) - limit} more)" if len(xs) > limit else "")

    return f"{what}, busiest first: {fmt(b)} -> {fmt(a)}"


def render(console: Console, v: Verdict, *, headline_keys: tuple[str, ...] = ()) -> None:
    console.print(Text(f"before: {_side(v.before)}"))
    console.print(Text(f"after:  {_side(v.after)}"))
    console.print(table(v))
    unmeasured = [r.label for r in v.rows if r.shown == ("-", "-") and not r.tested]
    if unmeasured:
        console.print(Text(f"not measured on either side: {', '.join(unmeasured)}", style="dim"))
    console.print(shares_line("each worker's share of accepts", *_shares(v, "accept")))
    console.print(shares_line("each worker's share of CPU", *_shares(v, "cpu")))
    for name, side in (("before", v.before), ("after", v.after)):
        for message in side.diagnoses.values():
            console.print(Text(f"{name}: {message}", style="yellow"))
    console.print(Text(v.method(), style="dim"))
    for note in v.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    style = "bold green" if v.differences else "bold"
    console.print(Text("verdict: ", style="bold") + Text(v.headline(headline_keys), style=style))


def _side(s: Side) -> str:
    what = ", ".join(x for x in (s.model, s.load) if x) or "unknown setup"
    return f"{s.name}: {what}, {s.duration_s:.1f} s, {s.samples} samples"


def _shares(v: Verdict, what: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if what == "accept":
        return v.before.accept_shares, v.after.accept_shares
    return v.before.cpu_shares, v.after.cpu_shares
