"""Reading an attached Apache's mod_status without changing what is measured.

A status request is a connection like any other: under prefork starvation it waits in
the accept queue like the clients do, and a connection there cannot be withdrawn by the
client (closing it leaves the server's end queued until a worker accepts it). Polled
every ~2 s and given up after 1 s, it grew a starved prefork's queue from 6 to 15 real
and abandoned connections. So, here:
- a request is made only right after a sample that saw a free worker (the sampler's
  `allow(free=...)`), never while every worker is busy and connections wait: then
  `describe()` says "mod_status paused: the server has no free worker";
- one connection per poll (the ?auto page and the HTML page's slot -> pid table on one
  keep-alive connection), closed whatever happens; the worker writing our own page is
  taken out of the scoreboard (it was free: it took our request);
- each connection's own endpoint is known before it connects (bound first), and stays
  listed (`endpoints()`) until a connection dump no longer shows its server side
  (`forget`), so the sampler leaves it out of the connections and queues it reports;
- with ExtendedStatus, each process's current request and client (`currents()`, from
  the same HTML page: modstatus.current_by_pid), our own status requests left out; a
  request seen again keeps the start first read (SS is whole seconds: each read would
  move it by up to a second).
The poll runs in a thread of its own, so a request that waits never stalls the sampler.
"""

from __future__ import annotations

import dataclasses
import http.client
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from values.current import Current
from values.snapshot import WorkerState

from . import modstatus
from .modstatus import ModStatus, ModStatusError, auto_url, parse_auto, parse_html_pids
from .modstatus import states_by_pid as _states_by_pid
from .netns import NetNs
from .sockscan import Endpoint

STATUS_PERIOD_S = 1.0  # at most one poll this often
STATUS_TIMEOUT_S = 1.0  # connect, and each response, may take this long
STATUS_FRESH_S = 3.0  # glyphs older than this (and not read since the last sample) unused
STEADY_S = 1.5  # a request's start read again within this is the same start (SS: seconds)
OUTSIDE_VIEW = "outside view (/proc states + sockets)"
PAUSED = "mod_status paused: the server has no free worker"


@dataclasses.dataclass(frozen=True)
class StatusView:
    """One read of mod_status as a sample uses it (StatusPoller.view)."""

    states: dict[int, tuple[WorkerState, ...]]  # pid: its slot's states; {} when stale
    currents: dict[int, Current]  # pid: its current request (ExtendedStatus)
    text: str  # the line saying where the states come from


class StatusPoller:
    """Polls mod_status at `url` when the sampler allows it; `states()` gives {pid: the
    states of its scoreboard slot (one per thread slot under worker/event)} from the last
    fresh read, else {} (the outside view). `auto`: the URL is a guess (auto-detection):
    if it answers anything but mod_status, polling stops and the outside view stands."""

    def __init__(
        self,
        url: str,
        *,
        auto: bool = False,
        period_s: float = STATUS_PERIOD_S,
        netns: NetNs | None = None,  # connect from inside this network namespace
    ):
        self.netns = netns
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.auto = auto
        self.period_s = period_s
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        path = parts.path or "/"
        self._auto_path = auto_url(path + (f"?{parts.query}" if parts.query else ""))
        self._html_path = path
        self.error: str | None = None
        self.absent = False  # auto: what answers is not mod_status; polling stopped
        self.paused = False  # the last sample saw no free worker
        self.latest: ModStatus | None = None
        self.polls = 0  # connections made (a poll's two requests share one)
        self.own_left_in = False  # the last read counts our own request (not located)
        self._slots: dict[int, tuple[WorkerState, ...]] = {}
        self._current: dict[int, Current] = {}  # pid: its current request (ExtendedStatus)
        # pid: requests its in-progress row's slot had ended, at the last read and this one
        self._served: dict[int, int | None] = {}
        self._served_now: dict[int, int | None] = {}
        self._at = -1e18  # when the glyphs were read
        self._allowed_at = -1e18  # the sample before the last `allow`
        self._last_allow = -1e18
        self._polled_at = -1e18
        self._own: dict[Endpoint, bool] = {}  # our endpoints -> still open
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="mod_status")
        self._thread.start()

    # -- the sampler's side ---------------------------------------------------------
    def allow(self, free: bool) -> None:
        """After each sample: `free` when a worker was seen free (or nothing waits in the
        accept queue); a poll is then made if one is due. When not, none is, and the
        glyphs read before are dropped (they describe a server that was not saturated)."""
        now = time.monotonic()
        with self._lock:
            self._allowed_at, self._last_allow = self._last_allow, now
            self.paused = not free
            if not free:
                self._slots = {}
                self._current = {}
                return
        if not self.absent and now - self._polled_at >= self.period_s:
            self._polled_at = now
            self._go.set()

    def endpoints(self) -> frozenset[Endpoint]:
        """Our client endpoints whose server side may still be about."""
        with self._lock:
            return frozenset(self._own)

    def forget(self, seen: Iterable[Endpoint], dumped: bool) -> None:
        """A connection dump (`dumped`) showed the server side of `seen` only: our closed
        connections it did not show are gone for good (the 4-tuple cannot come back while
        our end is in TIME-WAIT)."""
        if not dumped:
            return
        seen = set(seen)
        with self._lock:
            for ep in [e for e, open_ in self._own.items() if not open_ and e not in seen]:
                del self._own[ep]

    def view(self) -> StatusView:
        """What the last read says, taken at once: the states, the current requests and
        the line describing them come from one read (a poll ending between reading the
        states and the line gave a sample saying "mod_status ..." with no glyph in it)."""
        with self._lock:
            slots = self._fresh_slots()
            return StatusView(slots, self._current if slots else {}, self._describe(slots))

    def states(self) -> dict[int, tuple[WorkerState, ...]]:
        """{pid: its slot's states}, when read since the previous sample or lately."""
        return self.view().states

    def currents(self) -> dict[int, Current]:
        """{pid: its current request and client}, fresh as `states()` is."""
        return self.view().currents

    def describe(self) -> str:
        return self.view().text

    def _fresh_slots(self) -> dict[int, tuple[WorkerState, ...]]:
        now = time.monotonic()
        if self._at >= self._allowed_at or now - self._at <= STATUS_FRESH_S:
            return self._slots
        return {}

    def _describe(self, slots: dict[int, tuple[WorkerState, ...]]) -> str:
        if self.absent:
            return OUTSIDE_VIEW
        if self.paused:
            return f"{OUTSIDE_VIEW}; {PAUSED}"
        st = self.latest
        if st is not None and slots:
            parked = st.fields.get("ConnsAsyncKeepAlive")
            extra = f", {parked} keep-alive parked" if parked and parked != "0" else ""
            if self.own_left_in:
                extra += ", our status request among the busy"
            return f"mod_status {self.url} ({st.mpm or '?'}: {st.busy} busy, {st.idle} idle{extra})"
        if self.auto and self.error is None:
            return OUTSIDE_VIEW
        why = self.error or "no answer yet"
        return f"outside view: mod_status {self.url} not answering ({why})"

    def close(self) -> None:
        self._stop = True
        self._go.set()
        self._thread.join(timeout=STATUS_TIMEOUT_S * 3 + 1)

    # -- the poll ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._go.wait()
            if self._stop:
                return
            self._go.clear()
            try:
                st, pids, current, own_left_in = self._poll()
                slots = _states_by_pid(st, pids)
                with self._lock:  # one read, seen whole by `view()`
                    self.latest, self._slots = st, slots
                    self.own_left_in = own_left_in
                    self._current = _steady(self._current, current, self._served, self._served_now)
                    self._served = self._served_now
                    self._at = time.monotonic()
                    self.error = None
            except ModStatusError as e:
                with self._lock:
                    self.error = str(e)[:120]
                    self.absent = self.auto and self.latest is None
            except (OSError, http.client.HTTPException, ValueError) as e:
                with self._lock:
                    self.error = f"{type(e).__name__}: {e}"[:120]

    def _poll(self) -> tuple[ModStatus, dict[int, int], dict[int, Current], bool]:
        """The ?auto page and the HTML page, on one connection when the server keeps it;
        closed however the poll ends (a timeout included), its endpoints then retired.
        Our own request is in what mod_status reports (a worker writing the page): the
        HTML request carries a marker, so its ExtendedStatus row names the process that
        serves our connection (the same one served ?auto: a connection stays with the
        child that accepted it), and that W is taken out (modstatus.without_own); the last
        value says our request could not be located (it is left among the busy)."""
        conn = self._connection()
        marker = f"serverscope={os.getpid()}.{self.polls}"
        try:
            st = parse_auto(self._get(conn, self._auto_path))
            same = True
            if conn.sock is None:  # the server closed it after the first answer
                conn.close()
                conn = self._connection()
                same = False
            sep = "&" if "?" in self._html_path else "?"
            html = self._get(conn, f"{self._html_path}{sep}{marker}")
            at = time.monotonic()
            pids = parse_html_pids(html)
            mine, auto = f"serverscope={os.getpid()}.", f"GET {self._auto_path} "
            served: dict[int, int | None] = {}
            current = modstatus.current_by_pid(
                modstatus.parse_rows(html),
                at,
                lambda req: mine in req or req.startswith(auto),
                served,
            )
            own = modstatus.serving(html, marker) if same else None
            width = modstatus.per_slot(st, pids)
            if own is not None and width is not None:
                st = modstatus.without_own(st, own[0], width)
            self._served_now = served
            return st, pids, current, own is None
        finally:
            conn.close()
            with self._lock:
                for ep in self._own:
                    self._own[ep] = False

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=STATUS_TIMEOUT_S)
        conn._create_connection = self._socket  # type: ignore[attr-defined]
        self.polls += 1
        return conn

    def _get(self, conn: http.client.HTTPConnection, path: str) -> str:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode("latin-1")
        if r.status != 200:
            raise ModStatusError(f"HTTP {r.status} from {path}: is mod_status there?")
        return body

    def _socket(
        self, address: tuple[str, int], timeout: float | None, source: object = None
    ) -> socket.socket:
        """Connect as socket.create_connection does, with our endpoint listed BEFORE the
        SYN leaves (bound first on a loopback address), and kept listed after close."""
        family, kind, proto, _, sa = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0]
        if self.netns is None:
            s = socket.socket(family, kind, proto)
        else:
            s = self.netns.run(lambda: socket.socket(family, kind, proto))
        try:
            s.settimeout(timeout)
            local = _loopback_source(str(sa[0]))
            s.bind((local or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
            if local:
                self._register(local, s.getsockname()[1])
            s.connect(sa)
            if not local:
                self._register(*s.getsockname()[:2])
            return s
        except BaseException:
            s.close()
            raise

    def _register(self, addr: str, port: int) -> None:
        eps: list[Endpoint] = [(addr, port)]
        if "." in addr:  # a dual-stack listener sees it as ::ffff:a.b.c.d
            eps.append((f"::ffff:{addr}", port))
        with self._lock:
            for ep in eps:
                self._own[ep] = True


def _steady(
    before: dict[int, Current],
    now: dict[int, Current],
    served_before: dict[int, int | None] | None = None,
    served_now: dict[int, int | None] | None = None,
) -> dict[int, Current]:
    """`now`, where a pid's request in progress is the one read before (same line and
    client, its start within STEADY_S, and its slot has ended no request since: a client
    sending the same request again and again is not one long request), with the start
    read first."""
    out = {}
    for pid, cur in now.items():
        old = before.get(pid)
        a = (served_before or {}).get(pid)
        b = (served_now or {}).get(pid)
        if (
            old is not None
            and (a is None or b is None or a == b)
            and cur.requests
            and old.requests
            and (old.request, old.client) == (cur.request, cur.client)
            and cur.began is not None
            and old.began is not None
            and abs(cur.began - old.began) <= STEADY_S
        ):
            cur = dataclasses.replace(cur, began=old.began)
        out[pid] = cur
    return out


def _loopback_source(host: str) -> str | None:
    """The address to bind to reach `host` from: itself when it is a loopback address."""
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None
