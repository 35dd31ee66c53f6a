"""Apache mod_status: the real scoreboard of an attached Apache httpd.

`GET /server-status?auto` gives BusyWorkers, IdleWorkers and the scoreboard, one glyph
per slot (per process under prefork; per thread under worker/event, ThreadLimit glyphs
per process slot, in slot order). It has no pids: the HTML page (`/server-status`,
ExtendedStatus On) does, in its per-process table (event/worker: `Slot | PID | ...`) and
in the per-slot request rows (`Srv` = `slot-generation`, then `PID`). The glyphs are
Apache's own and are shown as they are; `STATE_OF_GLYPH` maps them to serverscope's
scoreboard state names (telemetry.snapshot.STATES).

Parsed by hand: the format is a few `Key: value` lines and a table; no library reads it.
Tested on output captured from Debian's Apache 2.4 (tests/data/mod_status_*).

Read with an opener of our own that has no proxy and follows no redirect: urllib's default
one sends a request for 127.0.0.1 to whatever http_proxy / HTTP_PROXY names, and follows a
302 anywhere, off this machine; mod_status itself never redirects.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field

from .snapshot import WorkerState

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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # the 3xx is raised as an HTTPError (an OSError): "not answering"


# no proxy from the environment (an empty ProxyHandler), no redirect: read where it is
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def _get(url: str, timeout: float) -> str:
    with _OPENER.open(url, timeout=timeout) as r:
        return r.read().decode("latin-1")


def fetch(url: str, timeout: float = 2.0) -> ModStatus:
    """GET a ?auto URL (adds `?auto` when missing) and parse it."""
    if "?auto" not in url:
        url += "&auto" if "?" in url else "?auto"
    return parse_auto(_get(url, timeout))


STATUS_PERIOD_S = 1.0  # how often the poller reads mod_status
STATUS_TIMEOUT_S = 1.0  # ... and how long one read may take
STATUS_FRESH_S = 3.0  # glyphs older than this are not used (the outside view is)


def _html_url(url: str) -> str:
    return url.split("?", 1)[0]


class StatusPoller:
    """Reads mod_status in a thread of its own, so that a status request that queues
    (under prefork starvation it waits like any other request) never stalls the sampler;
    `states()` gives {pid: state} from the last fresh read, else {} (the outside view)."""

    def __init__(self, url: str, period_s: float = STATUS_PERIOD_S) -> None:
        import threading

        self.url = url
        self.period_s = period_s
        self.error: str | None = None
        self.latest: ModStatus | None = None
        self._states: dict[int, WorkerState] = {}
        self._at = -1e18
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="mod_status")
        self._thread.start()

    @staticmethod
    def probe(url: str, timeout: float = STATUS_TIMEOUT_S) -> str | None:
        """`url` when it answers mod_status ?auto now, else None (auto-detection)."""
        try:
            fetch(url, timeout)
        except (OSError, ModStatusError, ValueError):
            return None
        return url

    def _run(self) -> None:
        import time

        while not self._stop.is_set():
            try:
                st = fetch(self.url, STATUS_TIMEOUT_S)
                pids = parse_html_pids(_get(_html_url(self.url), STATUS_TIMEOUT_S))
                states: dict[int, WorkerState] = {}
                if st.mpm in (None, "prefork"):  # one glyph per process slot
                    for slot, pid in pids.items():
                        if slot < len(st.scoreboard):
                            states[pid] = STATE_OF_GLYPH[st.scoreboard[slot]]
                self.latest, self._states, self._at = st, states, time.monotonic()
                self.error = None
            except (OSError, ModStatusError, ValueError) as e:
                self.error = f"{type(e).__name__}: {e}"[:120]
            self._stop.wait(self.period_s)

    def states(self) -> dict[int, WorkerState]:
        import time

        return self._states if time.monotonic() - self._at <= STATUS_FRESH_S else {}

    def describe(self) -> str:
        import time

        age = time.monotonic() - self._at
        if self.latest is not None and age <= STATUS_FRESH_S:
            st = self.latest
            return f"mod_status {self.url} ({st.mpm or '?'}: {st.busy} busy, {st.idle} idle)"
        why = self.error or "no answer yet"
        return f"outside view: mod_status {self.url} not answering ({why})"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=STATUS_TIMEOUT_S * 2 + 1)
