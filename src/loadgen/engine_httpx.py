"""The httpx engine: full HTTP semantics (redirects, chunked bodies, TLS) for any server.

One `httpx.AsyncClient` per virtual user with a pool of one connection, so "clients" means
connections as in the fast engine. Connect times come from httpcore's trace hook
(`connection.connect_tcp.*`). Slow (see engine.py): use it for correctness, not rate.

Phases (stats.ClientPhases) from the same hook, as far as httpcore tells: connect is the
sum of this request's TCP connects (0 on a reused connection); the first byte is when
httpcore has read the response head (`http11.receive_response_headers.complete`: it does
not report the first byte itself, so ttfb includes parsing the head, and a redirect's
earlier hops); the last byte is `http11.receive_response_body.complete` of the last hop.

The loopback rule holds for every hop (a loopback server may answer
`302 Location: http://10.0.0.1/`): httpx does
not follow redirects itself; this engine follows one only to a literal loopback address or
`localhost` (or anywhere with --allow-remote), and connects to the address it checked (the
URL carries the address, the Host header the name). A redirect it may not follow is
answered as what it is, a 3xx. Nor does the environment bend it: httpx reads
http_proxy, HTTPS_PROXY, ALL_PROXY... by default (`trust_env`), and with one set it sent every
request for 127.0.0.1 to the proxy; `trust_env=False`
(also: no .netrc, no SSL_CERT_FILE) keeps every connection on the address checked.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from plumbing.loopback import loopback_address

from .engine import Client, Engine, RequestError
from .levels import LoadLevel

_monotonic = time.monotonic
MAX_REDIRECTS = 20  # httpx's default


def _netloc(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


def next_hop(url: httpx.URL, location: str, allow_remote: bool) -> tuple[httpx.URL, str] | None:
    """Where a redirect from `url` to `location` goes, as (URL to connect to, Host header),
    or None when the loopback rule forbids following it. No DNS lookup is made here."""
    nxt = url.join(location)
    if nxt.scheme not in ("http", "https") or not nxt.host:
        return None
    host_header = _netloc(nxt.host, nxt.port)
    local = loopback_address(nxt.host)
    if local is not None:
        return nxt.copy_with(host=local), host_header
    if allow_remote:
        return nxt, host_header
    return None


class HttpxClient(Client):
    def __init__(self, engine: HttpxEngine) -> None:
        self.engine = engine
        self.client: httpx.AsyncClient | None = None
        self.conn_open = False
        self._t = 0.0
        self.connecting = 0.0  # seconds of TCP connects in the current request
        self.t_start = self.t_conn = self.t_first = self.t_last = 0.0

    async def _trace(self, name: str, info: dict[str, Any]) -> None:
        if name == "http11.receive_response_headers.complete":
            self.t_first = _monotonic()
        elif name == "http11.receive_response_body.complete":
            self.t_last = _monotonic()
        elif name == "connection.connect_tcp.started":
            self._t = _monotonic()
            if self.conn_open:  # the pool dropped the old one without telling
                self._closed()
        elif name == "connection.connect_tcp.complete":
            took = _monotonic() - self._t
            self.connecting += took
            self.engine.rec.connect.record_us(int(took * 1e6))
            self.engine.rec.open += 1
            self.conn_open = True

    def _closed(self) -> None:
        if self.conn_open:
            self.conn_open = False
            self.engine.rec.open -= 1

    async def request(self, start: float | None = None) -> int:
        # one function on purpose: httpcore's trace hook fills the phases as the steps run
        if start is None:
            start = _monotonic()
        e = self.engine
        self.connecting = 0.0
        self.t_first = self.t_last = 0.0
        if self.client is None:
            self.client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                follow_redirects=False,  # followed by hand: each hop is checked
                headers={"User-Agent": "serverscope-loadgen"},
                verify=e.ssl_context,
                trust_env=False,  # no proxy from the environment: the loopback rule holds
            )
        try:
            url, host = httpx.URL(e.url), e.host_header
            for _ in range(MAX_REDIRECTS + 1):
                headers = {"Host": host, **(e.headers or {})}
                r = await self.client.get(
                    url, headers=headers, timeout=e.timeout, extensions=e.ext(self)
                )
                location = r.headers.get("location")
                if not r.is_redirect or location is None:
                    break
                hop = next_hop(url, location, e.target.allow_remote)
                if hop is None:
                    break  # not followed: the 3xx is the answer
                url, host = hop
            else:
                raise httpx.TooManyRedirects("too many redirects", request=r.request)
        except httpx.ConnectTimeout:
            self._closed()
            raise RequestError("connect_timeout", connect=True) from None
        except httpx.ConnectError:
            self._closed()
            raise RequestError("refused", connect=True) from None
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            self._closed()
            raise RequestError("read_timeout") from None
        except httpx.RemoteProtocolError as err:
            self._closed()
            text = str(err).lower()
            kind = "reset" if "disconnect" in text or "closed" in text else "bad_response"
            raise RequestError(kind) from None
        except (httpx.ReadError, httpx.WriteError, httpx.CloseError):
            self._closed()
            raise RequestError("reset") from None
        except (httpx.DecodingError, httpx.TooManyRedirects, httpx.ProtocolError):
            self._closed()
            raise RequestError("bad_response") from None
        except httpx.TransportError:
            self._closed()
            raise RequestError("reset") from None
        if not e.level.keepalive or r.headers.get("connection", "").lower() == "close":
            self._closed()
        # phases: connects first, then everything up to the last hop's head is ttfb
        self.t_start = start  # (httpx retries inside one request: its lost time is ttfb)
        self.t_conn = start + self.connecting
        now = _monotonic()
        if not self.t_last:  # no body event (never seen, but never leave a 0 behind)
            self.t_last = now
        if not self.t_first:
            self.t_first = self.t_last
        self.t_first = max(self.t_conn, self.t_first)
        self.t_last = max(self.t_first, self.t_last)
        return r.status_code

    async def close(self) -> None:
        self._closed()
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()


class HttpxEngine(Engine):
    name = "httpx"

    def __init__(self, target, level, rec) -> None:  # type: ignore[no-untyped-def]
        super().__init__(target, level, rec)
        # one TLS context for every user's client, with httpx's own defaults (certifi):
        # each AsyncClient made its own, 55 ms of CPU each, so 50 users spent ~3 s before
        # their second request (bench_loadgen.py read 7-11 req/s with 50 connections)
        self.ssl_context = httpx.create_ssl_context()
        self.set_level(level)

    def set_level(self, level: LoadLevel) -> None:
        self.level = level
        t = self.target
        # connect to the address checked by resolve(), not to a name httpx would look up
        self.url = f"{t.scheme}://{_netloc(t.addr, t.port)}{t.path_for(level)}"
        self.host_header = t.host_header
        self.headers = None if level.keepalive else {"Connection": "close"}
        self.timeout = httpx.Timeout(
            connect=level.connect_timeout,
            read=level.read_timeout,
            write=level.read_timeout,
            pool=None,
        )

    def ext(self, client: HttpxClient) -> dict[str, Any]:
        ext: dict[str, Any] = {"trace": client._trace}
        if self.target.scheme == "https":
            ext["sni_hostname"] = self.target.host  # TLS checks the name, not the address
        return ext

    def client(self) -> HttpxClient:
        return HttpxClient(self)
