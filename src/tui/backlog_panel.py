"""Backlog: each listening socket's accept queue (queue / limit) as a bar, one per worker
for reuseport, how connections reach the workers (the mechanism read from /proc: "shared ·
epoll, all waiters woken", "reuseport · by hash", ...; "unknown" when not read), plus the
kernel's overflow/drop counters and half-open (SYN_RECV) sockets."""

from __future__ import annotations

from rich.text import Text

from values.snapshot import ListenerSample
from values.units import PAST_LIMIT_NOTE, num

from .drawing import PAUSED_STYLE, STATE_STYLE, bar, fill_style
from .frame import Frame
from .quiet_static import QuietStatic, line_count

MAX_BARS = 8  # listeners drawn; the rest are summed up in one line


class BacklogPanel(QuietStatic):
    def show(self, frame: Frame) -> None:
        snap = frame.snapshot
        width = self.content_region.width or 40
        listeners = list(snap.listeners)
        paused_listeners = {  # by us (the lab's p), or by someone (attach: /proc says T)
            w.listener: STATE_STYLE["stopped"] if w.state == "stopped" else PAUSED_STYLE
            for w in snap.workers
            if (w.pid in frame.paused_pids or w.state == "stopped") and w.listener >= 0
        }
        owners = _owners(frame)
        shown = listeners
        if len(listeners) > MAX_BARS:
            keep = sorted(listeners, key=lambda ln: (-ln.queue, ln.index))[: MAX_BARS - 1]
            shown = sorted(keep, key=lambda ln: ln.index)
        t = Text()
        if not listeners:
            t.append("no listening socket\n", style="dim")
        many = len(listeners) > 1
        for ln in shown:
            _line(t, ln, width, many, paused_listeners.get(ln.index), owners.get(ln.index, ""))
        if any(ln.past_limit for ln in shown):  # 17/16 is true: say why, once
            t.append(f"{PAST_LIMIT_NOTE}\n", style="dim")
        rest = [ln for ln in listeners if ln not in shown]
        if rest:
            t.append(f"+{len(rest)} more, queues ≤ {max(ln.queue for ln in rest)}\n", style="dim")
        if listeners:
            _mechanism(t, listeners)
        kernel = snap.kernel
        short = width < 36
        if kernel is not None:
            over = kernel.overflows_delta or 0
            drops = kernel.drops_delta or 0
            t.append("overflow " if short else "overflows ", style="dim")
            t.append(f"+{over}", style="bold red" if over else "")
            t.append(" drop " if short else "  drops ", style="dim")
            t.append(f"+{drops}", style="bold red" if drops else "")
            self.set_subtitle("kernel counters: namespace-wide")
        syn = next((ln.syn_recv for ln in listeners if ln.syn_recv is not None), None)
        t.append(" SYN " if short else "  SYN_RECV ", style="dim")
        t.append(num(syn), style="yellow" if syn else "")
        self.lines = line_count(t)
        self.show_content(t, height=self.lines)

    lines = 1  # as last shown

    def rows(self, compact: int) -> int:
        """Its lines at that compactness (the same at any: every queue is evidence)."""
        return self.lines


def _owners(frame: Frame) -> dict[int, str]:
    """Listener index -> who accepts on it: `pid 1234` (attach: the pid whose epoll set
    holds it, from /proc/PID/fdinfo; else the worker whose listener it is), `+N` more."""
    snap = frame.snapshot
    out: dict[int, str] = {}
    if snap.model is None or snap.model.accepts_method is None:
        return out  # the lab's own models: the listener index is the worker's slot
    for ln in snap.listeners:
        pids = list(ln.owners) or [
            w.pid for w in snap.workers if w.listener == ln.index and not w.is_thread
        ]
        if pids:
            more = f"+{len(pids) - 1}" if len(pids) > 1 else ""
            out[ln.index] = f"pid {pids[0]}{more}"
    return out


def _line(
    t: Text, ln: ListenerSample, width: int, many: bool, paused: str | None, owner: str = ""
) -> None:
    label = (f"#{ln.index:<3}" if many else f":{ln.port:<5}") + (f" {owner}" if owner else "")
    figures = f"{ln.queue:>4}/{ln.limit if ln.limit is not None else '?'}"
    barw = max(4, width - len(label) - len(figures) - 4)
    t.append(label, style=paused or "")
    t.append(" ")
    frac = max(ln.fill, 1 / (8 * barw)) if ln.queue else 0.0  # a queued one always shows
    t.append_text(bar(frac, barw, fill_style(ln.fill)))
    t.append(" ")
    t.append(figures, style="bold red" if ln.full else ("yellow" if ln.queue else ""))
    t.append("\n")


def _mechanism(t: Text, listeners: list[ListenerSample]) -> None:
    """One line: how connections reach the workers, each distinct mechanism read once."""
    words = list(dict.fromkeys(ln.mechanism for ln in listeners))
    t.append("accept ", style="dim")
    text = " / ".join(words)
    t.append(text, style="dim" if text == "unknown" else "")
    t.append("\n")
