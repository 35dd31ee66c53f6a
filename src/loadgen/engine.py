"""The engine interface: how a virtual user sends one request, whatever does the HTTP.

Why two engines: a load generator slower than the server it loads cannot show the
server's limits, and httpx is 20-60x slower than a bare asyncio client (see DOMAIN.md:
280-1,500 req/s against 29,000-41,000). So the `fast` engine speaks just the HTTP/1.1
that serverscope's own servers answer (Content-Length bodies, keep-alive, no TLS) with an
asyncio Protocol and pre-built request bytes, and the `httpx` engine gives full HTTP
semantics (redirects, chunked bodies, TLS, HTTP/1.0 peers) for other servers, where
correctness matters more than rate. Both plug into the same driver (`driver.py`), which
does the scheduling and the recording, so the results have the same type and meaning.

An engine makes one `Client` per virtual user; `Client.request(start)` sends the current
level's request on that user's connection (connecting first when it has none, and
recording the connect time), returns the status code, or raises `RequestError` with one
of `ERROR_KINDS`. After a request that returned, the client's `t_start`, `t_conn`,
`t_first` and `t_last` (time.monotonic()) say when it started on the connection that
answered it, when that connection was ready (= `t_start` on a reused one), when the
response's first byte and its last byte came: the driver turns them into the request's
phases (stats.ClientPhases).
"""

from __future__ import annotations

import ipaddress
import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass
from urllib.parse import urlsplit

from plumbing.loopback import loopback_address, refusal

from .levels import LoadError, LoadLevel
from .recorder import Recorder

ENGINES = ("fast", "httpx")


class RequestError(Exception):
    """A request that failed; `kind` is one of stats.ERROR_KINDS."""

    def __init__(self, kind: str, *, connect: bool = False, empty: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.connect = connect  # failed while connecting
        self.empty = empty  # the peer closed before sending a byte of the response


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str  # "http" or "https"
    host: str  # as written in the URL (for the Host header)
    port: int
    path: str  # path and query of the URL, "/" by default
    addr: str  # resolved address to connect to
    family: int
    loopback: bool
    allow_remote: bool = False  # --allow-remote: redirects may leave loopback too

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def path_for(self, level: LoadLevel) -> str:
        """The level's /work request when it has a cost, else the URL's own path."""
        target = level.target
        return self.path if target == "/" else target


def resolve(url: str, allow_remote: bool = False) -> Target:
    """Parse and resolve `url`; refuse (LoadError, one line) a host not on loopback, before
    any DNS lookup (a lookup of a remote name already leaves the machine)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https"):
        raise LoadError(f"unsupported URL scheme {parts.scheme!r} in {url}: use http or https")
    host = parts.hostname
    if not host:
        raise LoadError(f"no host in URL {url}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise LoadError(f"bad port in URL {url}") from None
    local = loopback_address(host)
    if local is not None:
        loopback = True
        addr = local
        family = socket.AF_INET6 if ":" in local else socket.AF_INET
    elif not allow_remote:
        raise LoadError(refusal("load", host))
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise LoadError(f"cannot resolve {host}: {e.strerror}") from None
        addrs = [(fam, str(sa[0])) for fam, _, _, _, sa in infos]
        loopback = all(ipaddress.ip_address(a).is_loopback for _, a in addrs)
        # IPv4 first, as servers here listen on 127.0.0.1
        family, addr = min(addrs, key=lambda fa: fa[0] != socket.AF_INET)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url, parts.scheme, host, port, path, addr, family, loopback, allow_remote)


class Client(ABC):
    """One virtual user's connection."""

    t_start: float  # the last request: started on the connection that answered it (the
    # user's `start`; later when it was sent again on a new connection after its keep-alive
    # connection closed under it unanswered: the time lost there is a wait, not a connect)
    t_conn: float  # the last request: connection ready (start, when reused)
    t_first: float  # ... its response's first byte
    t_last: float  # ... its response's last byte

    @abstractmethod
    def request(self, start: float | None = None) -> Awaitable[int]:
        """Send one request; `start` is time.monotonic() as the user starts it (now if None)."""

    @abstractmethod
    async def close(self) -> None: ...


class Engine(ABC):
    name: str

    def __init__(self, target: Target, level: LoadLevel, rec: Recorder) -> None:
        self.target = target
        self.rec = rec
        self.level = level

    def set_level(self, level: LoadLevel) -> None:
        self.level = level

    @abstractmethod
    def client(self) -> Client: ...

    async def start(self) -> None:  # noqa: B027 (optional hook)
        pass

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        pass
