"""Number formatting, one module for every renderer (text, TUI, commands): pure functions.

Unknown is never zero: every formatter takes None and shows it as "-" (the standard's
"what cannot be measured is shown as unknown"). Where two views print the same quantity
differently on purpose (the `load` command's wrk-like "1.25ms" beside the TUI's "1.25 ms"),
both spellings live here, named for where they are used, so that the choice is visible.
"""

from __future__ import annotations

UNKNOWN = "-"
WAIT_ALARM_MS = 1000.0  # a request waiting this long is shown in red (SYN retries start at 1 s)


def opt(value: float | None, fmt: str = "{:.0f}") -> str:
    """`value` in `fmt`, or "-" when it is unknown."""
    return UNKNOWN if value is None else fmt.format(value)


def pct(frac: float | None) -> str:
    """A share (0..1) as a whole percentage: 0.254 -> "25%"."""
    return UNKNOWN if frac is None else f"{100 * frac:.0f}%"


def num(value: float | None, digits: int = 0, none: str = UNKNOWN) -> str:
    """A count or rate with thousands separators: 12345.6 -> "12,346"."""
    if value is None:
        return none
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    """Milliseconds, readable from 0.05 ms to minutes (the TUI's panels)."""
    if value is None:
        return UNKNOWN
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def ms_wrk(value: float) -> str:
    """Milliseconds as wrk prints them: "1.20s", "3.40ms", "850us" (the `load` summary)."""
    if value >= 1000:
        return f"{value / 1000:.2f}s"
    if value >= 1:
        return f"{value:.2f}ms"
    return f"{value * 1000:.0f}us"


def mib(value: int | None, unit: str = "M") -> str:
    """Bytes in MiB, one decimal: 3145728 -> "3.0M"."""
    return UNKNOWN if value is None else f"{value / (1 << 20):.1f}{unit}"


def kilo(value: float) -> str:
    """An axis label: 12500 -> "12k", 1500 -> "1.5k", 42 -> "42", 0.5 -> "0.5"."""
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def rounded(value: float | None, digits: int = 4) -> float | None:
    """`round`, keeping None (unknown) as None: for JSON and CSV figures."""
    return None if value is None else round(value, digits)


def dur(ms: float | None, space: bool = True) -> str:
    """A duration for a diagnosis line or a narrow panel: "4.2 s", "12 ms", "1.5 ms",
    "850 us"; `space=False` gives "4.2s" (at most 5 characters); None gives "-"."""
    if ms is None:
        return "-"
    sp = " " if space else ""
    if ms >= 9999.5:
        return f"{ms / 1000:.0f}{sp}s"
    if ms >= 999.5:
        return f"{ms / 1000:.1f}{sp}s"
    if ms >= 9.95:
        return f"{ms:.0f}{sp}ms"
    if ms >= 0.995:
        return f"{ms:.1f}{sp}ms"
    us = ms * 1000
    if us >= 99.5:  # two significant figures: the histograms' buckets are 6% wide
        us = round(us, -1)
    return f"{us:.0f}{sp}µs"


# an accept queue's figure, as every view writes it
ADMITS_ONE_MORE = "Linux admits one past the backlog"
PAST_LIMIT_NOTE = f"full: {ADMITS_ONE_MORE}"


def queue_figure(queue: int, limit: int | None) -> str:
    """`5/16`; `17/16 (full: Linux admits one past the backlog)`; `5` (limit unknown)."""
    if limit is None or limit <= 0:
        return str(queue)
    note = f" ({PAST_LIMIT_NOTE})" if queue > limit else ""
    return f"{queue}/{limit}{note}"
