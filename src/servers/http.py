"""HTTP/1.1 protocol logic with no I/O in it, shared by every model.

Hand-written rather than h11 because every model's hot path runs through it and the
comparison with uvicorn/gunicorn (which parse in C) must be fair: a minimal GET here is
one ``bytes.find`` and one ``split``, where h11 builds several event objects per request.
It also carries Apache's limits (8 KiB of headers -> 431, a longer request target -> 414,
1 MiB of body -> 413, MaxKeepAliveRequests) that h11 does not know about, and hardening limits:
a Content-Length of more than 18 digits is 400 before int() sees it (4,301 digits made
int() raise and killed workers), a request line that is not HTTP/1.x is 400 as soon as it
is seen, and more than 32 pipelined requests waiting on a connection is 400 (a body's
bytes are not requests, whatever they hold).

Usage, whatever the I/O style::

    conn = HttpConnection(limits)
    conn.feed(data)                     # bytes from the socket
    while (ev := conn.next_event()) is not None:
        if isinstance(ev, ProtocolError): send(conn.error_response(ev)); close
        else: out = conn.response(ev, 200, body); send(out.head); send out.body in pieces
        if conn.must_close: close
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .http_head import response_head
from .reqtimeout import RequestReadTimeout

MAX_HEADER_BYTES = 8 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_LENGTH_DIGITS = 18  # a Content-Length of more digits is refused before int()
MAX_PIPELINE = 32  # complete requests waiting in one connection's buffer; more: 400
INLINE_BODY = 16 * 1024  # a body up to this goes out joined to its head; a larger one is
# left as the caller's read-only view and sent in pieces as the socket drains, never copied

_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Apache-like limits of one connection."""

    max_header_bytes: int = MAX_HEADER_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    max_keepalive_requests: int = 100  # MaxKeepAliveRequests; 0 = unlimited
    keepalive_timeout: float = 5.0  # KeepAliveTimeout, seconds
    request_timeout: float = 60.0  # Timeout: a request must arrive whole within this
    max_pipeline: int = MAX_PIPELINE  # pipelined requests waiting per connection
    read_timeout: RequestReadTimeout | None = None  # RequestReadTimeout; None: only Timeout


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: list[tuple[str, str]] = field(default_factory=list)  # names lower-cased
    body: bytes = b""
    keep_alive: bool = True

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        parts = self.target.split("?", 1)
        return parts[1] if len(parts) == 2 else ""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class Outgoing(NamedTuple):
    """A framed response: `head` (the body joined to it when small) and a large `body`,
    still the caller's read-only view: the caller sends it in pieces (no copy is made)."""

    head: bytes
    body: memoryview | None = None

    @property
    def size(self) -> int:
        return len(self.head) + (self.body.nbytes if self.body is not None else 0)


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The client sent something we cannot serve; answer with `status` and close."""

    status: int
    reason: str


class HttpConnection:
    """Parser and response framer for one connection; pipelining is answered in order."""

    __slots__ = (
        "_body_needed",
        "_buf",
        "_pending",
        "_quota",
        "limits",
        "must_close",
        "requests_done",
    )

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = b""
        self._pending: Request | None = None  # headers parsed, body still arriving
        self._body_needed = 0
        self.requests_done = 0
        self.must_close = False
        self._quota = -1  # requests still served before a 400 for too many pipelined; -1 none

    # -- input -------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        buf = self._buf = self._buf + data if self._buf else data
        cap = self.limits.max_pipeline
        # the count of blank lines is an upper bound, one C call; only past the cap are the
        # heads walked, skipping bodies (a body full of blank lines is no pipeline)
        if cap and self._quota < 0 and buf.count(b"\r\n\r\n") > cap:
            skip = self._body_needed if self._pending is not None else 0
            if _heads_waiting(buf, skip, cap) > cap:
                self._quota = cap  # answer the first `cap` requests waiting, then 400, close

    def drop(self) -> None:
        """Forget what is buffered: the client is gone, its queued requests are not served."""
        self._buf = b""
        self._pending = None
        self.must_close = True

    @property
    def idle(self) -> bool:
        """True between requests (nothing of the next one has arrived): keep-alive wait."""
        return not self._buf and self._pending is None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def pending(self) -> bytes:
        """The bytes received and not parsed yet: the start of the request being read."""
        return self._buf

    @property
    def reading_body(self) -> bool:
        """A request's head is in and its body is still arriving."""
        return self._pending is not None

    def next_event(self) -> Request | ProtocolError | None:
        """The next complete request, a protocol error, or None when more bytes are needed."""
        if self.must_close:
            return None
        if self._pending is not None:
            return self._take_body()
        buf = self._buf
        if not buf:
            return None
        if self._quota == 0:
            return self._fail(
                400, f"more than {self.limits.max_pipeline} pipelined requests waiting"
            )
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end + 4 > self.limits.max_header_bytes:
            # the request line alone can be judged: not HTTP/1.x (random bytes, HTTP/0.9,
            # bare LF) is 400 at once rather than a wait; an over-long target is 414
            err = self._check_request_line(buf)
            if err is not None:
                return err
        if end < 0:
            # tolerate a leading empty line (RFC 9112 2.2) only at the very start
            if len(buf) > self.limits.max_header_bytes:
                return self._fail(
                    431, f"header section larger than {self.limits.max_header_bytes} bytes"
                )
            return None
        if end + 4 > self.limits.max_header_bytes:
            return self._fail(
                431, f"header section larger than {self.limits.max_header_bytes} bytes"
            )
        head = buf[:end]
        self._buf = buf[end + 4 :]
        while head.startswith(b"\r\n"):
            head = head[2:]
        try:
            req = self._parse_head(head)
        except _Bad as e:
            return self._fail(e.status, e.reason)
        if self._quota > 0:
            self._quota -= 1
        return req if self._pending is None else self._take_body()

    def _check_request_line(self, buf: bytes) -> ProtocolError | None:
        """A verdict on an incomplete head from its request line: 400, 414, or None (wait)."""
        start = 0
        while buf.startswith(b"\r\n", start):
            start += 2
        eol = buf.find(b"\n", start)
        line = buf[start:] if eol < 0 else buf[start:eol]
        limit = self.limits.max_header_bytes
        sp = line.find(b" ")
        if sp < 0:
            if eol >= 0 or len(line) > 64 or not _TOKEN_CHARS.issuperset(line):
                return self._fail(400, "not an HTTP/1.x request line")
            return None
        if not line[:sp] or not _TOKEN_CHARS.issuperset(line[:sp]):
            return self._fail(400, "not an HTTP/1.x request line")
        if eol < 0:
            if len(line) > limit:
                return self._fail(414, f"request target longer than {limit} bytes")
            return None
        if len(line) > limit:
            return self._fail(414, f"request target longer than {limit} bytes")
        if not line.endswith(b"\r") or not line.rstrip(b"\r").rsplit(b" ", 1)[-1].startswith(
            b"HTTP/"
        ):
            return self._fail(400, "not an HTTP/1.x request line")
        return None

    def _take_body(self) -> Request | None:
        req = self._pending
        assert req is not None
        n = self._body_needed
        if len(self._buf) < n:
            return None
        req.body = self._buf[:n]
        self._buf = self._buf[n:]
        self._pending = None
        self._body_needed = 0
        return req

    def _parse_head(self, head: bytes) -> Request:
        # kept in one piece (over 60 lines): one pass over the head, on every request's hot path
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise _Bad(400, "malformed request line")
        method_b, target_b, version_b = parts
        if not method_b or not _TOKEN_CHARS.issuperset(method_b):
            raise _Bad(400, "malformed method")
        if not target_b or (target_b[0] not in b"/*" and not target_b.startswith(b"http")):
            raise _Bad(400, "malformed request target")
        if any(c < 0x21 or c == 0x7F for c in target_b):
            raise _Bad(400, "control character in request target")
        if version_b == b"HTTP/1.1":
            keep_alive = True
        elif version_b == b"HTTP/1.0":
            keep_alive = False
        elif version_b.startswith(b"HTTP/") and len(version_b) == 8 and version_b[5:6].isdigit():
            raise _Bad(505, "unsupported HTTP version")
        else:
            raise _Bad(400, "malformed HTTP version")
        headers: list[tuple[str, str]] = []
        content_length = 0
        seen_length = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or not _TOKEN_CHARS.issuperset(name):
                raise _Bad(400, "malformed header line")
            v = value.strip(b" \t")
            if b"\r" in v or b"\n" in v or b"\0" in v:
                raise _Bad(400, "control character in header value")
            lname = name.lower()
            if lname == b"content-length":
                # the length is checked before int(): 4,301 digits made int() raise
                if not v.isdigit() or len(v) > MAX_LENGTH_DIGITS:
                    raise _Bad(400, "bad Content-Length")
                if seen_length and int(v) != content_length:
                    raise _Bad(400, "bad Content-Length")
                content_length = int(v)
                seen_length = True
            elif lname == b"transfer-encoding":
                raise _Bad(501, "Transfer-Encoding in requests is not supported")
            elif lname == b"connection":
                tokens = {t.strip() for t in v.lower().split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
            headers.append((lname.decode("latin-1"), v.decode("latin-1")))
        if content_length > self.limits.max_body_bytes:
            raise _Bad(413, f"body larger than {self.limits.max_body_bytes} bytes")
        limit = self.limits.max_keepalive_requests
        if limit and self.requests_done + 1 >= limit:
            keep_alive = False
        req = Request(
            method_b.decode("ascii"),
            target_b.decode("latin-1"),
            version_b.decode("ascii"),
            headers,
            b"",
            keep_alive,
        )
        if content_length:
            self._pending = req
            self._body_needed = content_length
        return req

    def _fail(self, status: int, reason: str) -> ProtocolError:
        self.must_close = True
        self._buf = b""
        self._pending = None
        return ProtocolError(status, reason)

    # -- output ------------------------------------------------------------------------
    def response(
        self,
        req: Request,
        status: int,
        body: bytes | memoryview = b"",
        content_type: str = "text/plain",
    ) -> Outgoing:
        """Frame a response to `req`; marks the connection for closing when it must end.
        A body over INLINE_BODY is not copied: it comes back as a view, to send in pieces."""
        self.requests_done += 1
        if not req.keep_alive:
            self.must_close = True
        size = len(body)
        head = response_head(status, size, content_type, req.keep_alive, req.version)
        if req.method == "HEAD" or not size:
            return Outgoing(head)
        if size <= INLINE_BODY:
            return Outgoing(head + body)
        return Outgoing(head, memoryview(body).toreadonly())

    def error_response(self, err: ProtocolError) -> bytes:
        self.requests_done += 1
        self.must_close = True
        body = (err.reason + "\n").encode()
        return response_head(err.status, len(body), "text/plain", False, "HTTP/1.1") + body

    def timeout_response(self) -> bytes:
        """408 for a client that stopped mid-request (sent only when bytes had arrived)."""
        return self.error_response(ProtocolError(408, "request not completed in time"))


def _heads_waiting(buf: bytes, pos: int, cap: int) -> int:
    """Complete request heads in `buf` from `pos` (past the body being read), each one's
    body skipped by its Content-Length; stops counting once past `cap`."""
    n = 0
    while n <= cap:
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        n += 1
        head = buf[pos:end].lower()
        pos = end + 4
        i = head.find(b"\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r", i)
            v = head[i + 16 : j if j >= 0 else len(head)].strip(b" \t")
            if not v.isdigit() or len(v) > MAX_LENGTH_DIGITS:
                break  # the parser refuses this head: nothing after it is served
            pos += int(v)
    return n


class _Bad(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
