"""Apache mod_status: the real scoreboard of an attached Apache httpd.

`GET /server-status?auto` gives BusyWorkers, IdleWorkers and the scoreboard, one glyph
per slot (per process under prefork; per thread under worker/event, ThreadLimit glyphs
per process slot, in slot order). It has no pids: the HTML page (`/server-status`,
ExtendedStatus On) does, in its per-process table (event/worker: `Slot | PID | ...`) and
in the per-slot request rows (`Srv` = `slot-generation`, then `PID`). The glyphs are
Apache's own and are shown as they are; `STATE_OF_GLYPH` maps them to serverscope's
scoreboard state names (values.snapshot.STATES).

The same rows (`parse_rows`: Srv, PID, M, SS, Client, Request, by the header's column
names) give each process its current request and client (`current_by_pid`). Seen on
Debian's Apache 2.4.71 prefork: a client that sent a request line and a header and
stopped reads `R` with an empty Request (Apache shows the line once the head is read)
and SS counting from its connection; an idle keep-alive one `K` with its last Request
and SS counting from that request's end; Client is the address alone (no port).

Parsed by hand: the format is a few `Key: value` lines and a table; no library reads it.
Tested on output captured from Debian's Apache 2.4 (tests/data/mod_status_*). Reading it
from a live server, without loading a saturated one: readers.statuspoll (http.client
over a socket of its own: no proxy, no redirect). `fetch`, for one-off reads, goes through
an opener of our own with no proxy and no redirect: urllib's default one sends a request
for 127.0.0.1 to whatever http_proxy / HTTP_PROXY names, and follows a 302 anywhere.
"""

from __future__ import annotations

import dataclasses
import html as htmllib
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from values.current import Current, Via
from values.snapshot import WorkerState

# Apache's glyphs (mod_status "Scoreboard Key") -> serverscope state names
STATE_OF_GLYPH: dict[str, WorkerState] = {
    "_": WorkerState.WAITING,  # waiting for connection
    "S": WorkerState.STARTING,
    "R": WorkerState.READING,  # reading request
    "W": WorkerState.WRITING,  # sending reply
    "K": WorkerState.KEEPALIVE,  # keepalive (read)
    "D": WorkerState.WORKING,  # DNS lookup
    "C": WorkerState.CLOSING,  # closing connection
    "L": WorkerState.WORKING,  # logging
    "G": WorkerState.CLOSING,  # gracefully finishing
    "I": WorkerState.CLOSING,  # idle cleanup of worker
    ".": WorkerState.EMPTY,  # open slot with no current process
}
BUSY_GLYPHS = frozenset("RWKDCL")  # what Apache counts as BusyWorkers (G is "graceful")


class ModStatusError(ValueError):
    """The text is not mod_status ?auto output; the message says what was wrong."""


@dataclass(frozen=True, slots=True)
class ModStatus:
    mpm: str | None  # "prefork", "worker", "event" (ServerMPM; None on old Apache)
    busy: int  # BusyWorkers
    idle: int  # IdleWorkers
    scoreboard: str
    processes: int | None = None  # "Processes" (event/worker)
    fields: dict[str, str] = field(default_factory=dict)

    def count(self, glyph: str) -> int:
        return self.scoreboard.count(glyph)

    def slots(self, threads_per_slot: int | None = None) -> list[str]:
        """The scoreboard cut per process slot: one glyph each under prefork, else
        `threads_per_slot` (ThreadLimit) glyphs each."""
        n = threads_per_slot or (1 if self.mpm in (None, "prefork") else 0)
        if n <= 0:
            raise ValueError(f"give threads_per_slot (ThreadLimit) for the {self.mpm} MPM")
        sb = self.scoreboard
        return [sb[i : i + n] for i in range(0, len(sb), n)]


def parse_auto(text: str) -> ModStatus:
    """Parse `/server-status?auto` output."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    missing = [k for k in ("Scoreboard", "BusyWorkers", "IdleWorkers") if k not in fields]
    if missing:
        raise ModStatusError(
            f"not mod_status ?auto output (no {', '.join(missing)}): is the URL "
            "/server-status?auto, with mod_status loaded?"
        )
    sb = fields["Scoreboard"]
    if not set(sb) <= set(STATE_OF_GLYPH):
        raise ModStatusError(f"unknown scoreboard glyphs {sorted(set(sb) - set(STATE_OF_GLYPH))}")
    try:
        busy, idle = int(fields["BusyWorkers"]), int(fields["IdleWorkers"])
        procs = int(fields["Processes"]) if "Processes" in fields else None
    except ValueError as e:
        raise ModStatusError(f"bad number in mod_status output: {e}") from None
    return ModStatus(fields.get("ServerMPM"), busy, idle, sb, procs, fields)


_PROC_ROW = re.compile(r"<tr><td>(\d+)</td><td>(\d+)</td><td>(?:no|yes)")
_SRV_ROW = re.compile(r"<tr><td><b>(\d+)-\d+</b></td><td>(\d+)</td>")


def parse_html_pids(html: str) -> dict[int, int]:
    """{process slot: pid} from the HTML status page (event/worker process table, and
    the ExtendedStatus per-slot rows, which prefork has too)."""
    out: dict[int, int] = {}
    for m in _SRV_ROW.finditer(html):
        if int(m.group(2)) > 0:
            out[int(m.group(1))] = int(m.group(2))
    for m in _PROC_ROW.finditer(html):
        out[int(m.group(1))] = int(m.group(2))
    return out


def serving(html: str, marker: str) -> tuple[int, int] | None:
    """(process slot, pid) of the ExtendedStatus row whose request line holds `marker`
    (a request of the monitor's own, told by a query argument it added); None without
    ExtendedStatus or without such a row."""
    for row in html.split("<tr>"):
        if marker in row:
            m = re.match(r"<td><b>(\d+)-\d+</b></td><td>(\d+)</td>", row)
            if m:
                return int(m.group(1)), int(m.group(2))
    return None


def without_own(st: ModStatus, slot: int, per_slot: int) -> ModStatus:
    """`st` with the monitor's own request taken out: the first W (sending reply: the
    status page itself) in process slot `slot` (`per_slot` glyphs each) read as "_"
    (that worker was free, it took our request), BusyWorkers one less, IdleWorkers one
    more. `st` unchanged when the slot shows no W (the request moved on)."""
    sb = st.scoreboard
    i = sb.find("W", slot * per_slot, (slot + 1) * per_slot)
    if i < 0:
        return st
    return dataclasses.replace(
        st, busy=max(0, st.busy - 1), idle=st.idle + 1, scoreboard=f"{sb[:i]}_{sb[i + 1 :]}"
    )


def auto_url(url: str) -> str:
    """The ?auto form of a status URL."""
    if "?auto" in url:
        return url
    return url + ("&auto" if "?" in url else "?auto")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # the 3xx is raised as an HTTPError (an OSError): "not answering"


# no proxy from the environment (an empty ProxyHandler), no redirect: read where it is
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def fetch(url: str, timeout: float = 2.0) -> ModStatus:
    """GET a ?auto URL (adds `?auto` when missing) and parse it (tests, one-off reads;
    the attach sampler reads through readers.statuspoll)."""
    with _OPENER.open(auto_url(url), timeout=timeout) as r:
        return parse_auto(r.read().decode("latin-1"))


def thread_limit(scoreboard: str, active: set[int]) -> int | None:
    """Glyphs per process slot (ThreadLimit), which ?auto does not print: the smallest
    divisor t of the scoreboard's length that cuts it so that the slots with a process
    (`active`, from the HTML page) have a glyph that is not "." and the others none.
    Cut wider than the truth (only slot 0 active: any t from ThreadsPerChild up reads
    the same), each active slot still starts with its own threads' glyphs."""
    n = len(scoreboard)
    if not n or not active:
        return None
    for t in range(1, n + 1):
        if n % t:
            continue
        cut = [scoreboard[i : i + t] for i in range(0, n, t)]
        if all((c.strip(".") != "") == (i in active) for i, c in enumerate(cut)):
            return t
    return None


def per_slot(st: ModStatus, pids: dict[int, int]) -> int | None:
    """Glyphs per process slot: 1 under prefork, else ThreadLimit (see thread_limit)."""
    if st.mpm in (None, "prefork"):
        return 1
    return thread_limit(st.scoreboard, set(pids))


def states_by_pid(st: ModStatus, pids: dict[int, int]) -> dict[int, tuple[WorkerState, ...]]:
    """{pid: the states of its slot's glyphs}, from the scoreboard and {slot: pid} (the
    HTML page): one state under prefork; under worker/event one per thread slot, in slot
    order ("." kept as EMPTY, so position j stays worker thread j)."""
    if st.mpm in (None, "prefork"):
        sb = st.scoreboard
        return {pid: (STATE_OF_GLYPH[sb[slot]],) for slot, pid in pids.items() if slot < len(sb)}
    t = per_slot(st, pids)
    if t is None:
        return {}
    out: dict[int, tuple[WorkerState, ...]] = {}
    for slot, pid in pids.items():
        glyphs = st.scoreboard[slot * t : (slot + 1) * t].rstrip(".")
        if glyphs:
            out[pid] = tuple(STATE_OF_GLYPH[g] for g in glyphs)
    return out


# a request in progress in a slot: reading it, handling it (DNS, logging), writing its reply
IN_PROGRESS = frozenset("RWDL")
_TAG = re.compile(r"<[^>]*>")
_CELL = re.compile(r"<t([dh])[^>]*>(.*?)</t[dh]>", re.S)


@dataclass(frozen=True, slots=True)
class Row:
    """One ExtendedStatus row: a worker slot (a process under prefork, a thread else)."""

    slot: int  # process slot (Srv's first number)
    pid: int  # 0 for a dead slot ("-")
    mode: str  # M: its glyph
    ss: int | None  # SS: seconds since the slot last began or ended a request
    client: str  # Client ("" none)
    request: str  # Request, unescaped ("" none)
    served: int | None = None  # Acc's third figure: requests the slot ended; None unread


def parse_rows(page: str) -> list[Row]:
    """The ExtendedStatus rows of the HTML status page ([] without ExtendedStatus). The
    columns are found by the header's names (Srv, PID, M, SS, Client, Request)."""
    head: list[str] = []
    rows = []
    for chunk in page.split("<tr>")[1:]:
        cells = _CELL.findall(chunk)
        if not cells:
            continue
        if cells[0][0] == "h":
            names = [_text(c) for _, c in cells]
            if "Srv" in names and "Request" in names:
                head = names
            continue
        if not head or len(cells) != len(head):
            continue
        row = dict(zip(head, (_text(c) for _, c in cells), strict=True))
        slot, _, _gen = row["Srv"].partition("-")
        if not slot.isdigit():
            continue
        ss = row.get("SS", "")
        acc = row.get("Acc", "").rpartition("/")[2]
        rows.append(
            Row(
                slot=int(slot),
                pid=int(row["PID"]) if row["PID"].isdigit() else 0,
                mode=row.get("M", "") or "?",
                ss=int(ss) if ss.isdigit() else None,
                client=row.get("Client", ""),
                request=row["Request"],
                served=int(acc) if acc.isdigit() else None,
            )
        )
    return rows


def _text(cell: str) -> str:
    return htmllib.unescape(_TAG.sub("", cell)).strip()


def current_by_pid(
    rows: list[Row],
    at: float,
    ours: Callable[[str], bool] = lambda _: False,
    served: dict[int, int | None] | None = None,
) -> dict[int, Current]:
    """{pid: its current request and client}, read at `at` (monotonic): its oldest row
    with a request in progress (IN_PROGRESS; `requests` counting them, `began` at - SS),
    else its row that last ended one (smallest SS; `requests` 0, `began` unknown: SS
    counts from that request's end). Rows whose request is `ours` (the monitor's own
    status requests) are left out; a pid with no other row is left out too (unknown).
    `served`, when given, gets each pid's in-progress row's `served` (what tells a request
    read again from the next one on the same line and client)."""
    by_pid: dict[int, list[Row]] = {}
    for r in rows:
        if r.pid > 0 and not ours(r.request):
            by_pid.setdefault(r.pid, []).append(r)
    out = {}
    for pid, mine in by_pid.items():
        busy = [r for r in mine if r.mode in IN_PROGRESS]
        if busy:
            r = max(busy, key=lambda r: -1 if r.ss is None else r.ss)
            began = None if r.ss is None else at - r.ss
            out[pid] = Current(
                Via.MOD_STATUS, len(busy), r.request or None, r.client or None, began
            )
            if served is not None:
                served[pid] = r.served
        else:
            done = [r for r in mine if r.request]
            if done:
                r = min(done, key=lambda r: 1 << 62 if r.ss is None else r.ss)
                out[pid] = Current(Via.MOD_STATUS, 0, r.request, r.client or None)
            else:
                out[pid] = Current(Via.MOD_STATUS, 0)
    return out
