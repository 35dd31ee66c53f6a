"""Apache's mod_reqtimeout (`RequestReadTimeout`), with no I/O in it: how long a client may
take to send a request's head and its body.

Apache enables it by default with `header=20-40,MinRate=500 body=20,MinRate=500`: 20 s for
the head, one more second per 500 bytes received, never more than 40 s; 20 s for the body,
one more second per 500 bytes. A client that sends a byte a second (slowloris) holds a
worker 20 s, not the 60 s of `Timeout`. The header stage starts with the connection (or,
on a keep-alive connection, with the next request's first byte: KeepAliveTimeout governs
the wait before it), the body stage once the head is in. Past the deadline the client gets
408 and the connection is closed, as Apache does.

Syntax, as Apache's directive: space-separated `STAGE=TIMEOUT[-MAXTIMEOUT][,MinRate=RATE]`,
STAGE one of header, body (handshake is accepted and ignored: no TLS here); a TIMEOUT of
0 turns that stage's limit off. Seconds may have decimals here (Apache takes integers).
"""

from __future__ import annotations

from dataclasses import dataclass

APACHE_DEFAULT = "header=20-40,MinRate=500 body=20,MinRate=500"
MAX_SECONDS = 3600.0
STAGES = ("header", "body")
_SYNTAX = "STAGE=SECONDS[-MAXSECONDS][,MinRate=BYTES_PER_S] with STAGE header or body"


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage's limit: `timeout` s from its start, plus 1 s per `min_rate` bytes
    received, never past `max_timeout` s from its start."""

    timeout: float
    max_timeout: float | None = None
    min_rate: float | None = None  # bytes a second; None: no extension

    def deadline(self, start: float, received: int) -> float:
        end = start + self.timeout
        if self.min_rate:
            end += received / self.min_rate
        if self.max_timeout is not None:
            end = min(end, start + self.max_timeout)
        return end


@dataclass(frozen=True, slots=True)
class RequestReadTimeout:
    header: Stage | None = None  # None: no limit for that stage but Timeout's
    body: Stage | None = None


def parse(text: str) -> RequestReadTimeout:
    """Apache's syntax (module docstring); ValueError with one line on a bad value."""
    stages: dict[str, Stage | None] = {}
    for item in text.split():
        name, eq, value = item.partition("=")
        name = name.lower()
        if not eq or name not in (*STAGES, "handshake"):
            raise ValueError(f"expected {_SYNTAX}, got {item!r}")
        if name in stages:
            raise ValueError(f"{name} is given twice")
        stage = _stage(name, value)
        if name != "handshake":
            stages[name] = stage
    if not stages:
        raise ValueError(f"expected {_SYNTAX}, got {text!r}")
    return RequestReadTimeout(header=stages.get("header"), body=stages.get("body"))


def _stage(name: str, value: str) -> Stage | None:
    times, _, rest = value.partition(",")
    low, dash, high = times.partition("-")
    timeout = _seconds(name, low)
    max_timeout = _seconds(name, high) if dash else None
    min_rate = None
    if rest:
        key, eq, rate = rest.partition("=")
        if key.lower() != "minrate" or not eq:
            raise ValueError(f"{name}: expected MinRate=BYTES_PER_S after the comma, got {rest!r}")
        try:
            min_rate = float(rate)
        except ValueError:
            min_rate = -1.0
        if not 0 < min_rate <= 1e9:  # also refuses NaN
            raise ValueError(f"{name}: MinRate must be a number of bytes a second above 0")
    if max_timeout is not None:
        if max_timeout <= timeout:
            raise ValueError(f"{name}: the maximum {high} must be larger than the timeout {low}")
        if min_rate is None:
            raise ValueError(f"{name}: a range {times} needs MinRate (as Apache's)")
    if timeout == 0:
        return None  # 0 turns the stage off, as Apache's
    return Stage(timeout, max_timeout, min_rate)


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_SECONDS:  # also refuses NaN
        raise ValueError(f"{name}: expected seconds between 0 and {MAX_SECONDS:g}, got {text!r}")
    return value


class ReadClock:
    """When the request being read must be in: `timeout` s (Timeout) from its start, and
    the rules' header or body stage deadline, whichever comes first."""

    __slots__ = ("_got", "_stage", "_start", "_whole", "in_body", "rules", "timeout")

    def __init__(self, rules: RequestReadTimeout | None, timeout: float, now: float) -> None:
        self.rules = rules
        self.timeout = timeout
        self.begin(now)

    def begin(self, now: float) -> None:
        """A request starts: the connection's first, or the first byte of a later one."""
        self._whole = now + self.timeout
        self._stage = self.rules.header if self.rules is not None else None
        self._start = now
        self._got = 0
        self.in_body = False

    def restart(self, now: float) -> None:
        """The first request's first byte: Timeout runs from here; its header stage runs
        on from the accept (Apache's counts the wait for the first byte)."""
        self._whole = now + self.timeout

    def body(self, now: float, already: int) -> None:
        """The head is in, the body follows (`already` of its bytes have arrived)."""
        self._stage = self.rules.body if self.rules is not None else None
        self._start = now
        self._got = already
        self.in_body = True

    def received(self, n: int) -> None:
        self._got += n

    @property
    def deadline(self) -> float:
        stage = self._stage
        if stage is None:
            return self._whole
        return min(self._whole, stage.deadline(self._start, self._got))
