"""The httpx engine: full HTTP semantics (redirects, chunked bodies, TLS) for any server.

One `httpx.AsyncClient` per virtual user with a pool of one connection, so "clients" means
connections as in the fast engine. Connect times come from httpcore's trace hook
(`connection.connect_tcp.*`). Slow (see engine.py): use it for correctness, not rate.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from .engine import Client, Engine, RequestError
from .levels import LoadLevel

_monotonic = time.monotonic


class HttpxClient(Client):
    def __init__(self, engine: HttpxEngine) -> None:
        self.engine = engine
        self.client: httpx.AsyncClient | None = None
        self.conn_open = False
        self._t = 0.0

    async def _trace(self, name: str, info: dict[str, Any]) -> None:
        if name == "connection.connect_tcp.started":
            self._t = _monotonic()
            if self.conn_open:  # the pool dropped the old one without telling
                self._closed()
        elif name == "connection.connect_tcp.complete":
            self.engine.rec.connect.record_us(int((_monotonic() - self._t) * 1e6))
            self.engine.rec.open += 1
            self.conn_open = True

    def _closed(self) -> None:
        if self.conn_open:
            self.conn_open = False
            self.engine.rec.open -= 1

    async def request(self) -> int:
        e = self.engine
        if self.client is None:
            self.client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                follow_redirects=True,
                headers={"User-Agent": "serverscope-loadgen"},
            )
        try:
            r = await self.client.get(
                e.url, headers=e.headers, timeout=e.timeout, extensions=e.ext(self)
            )
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
        self.set_level(level)

    def set_level(self, level: LoadLevel) -> None:
        self.level = level
        self.url = self.target.url_for(level)
        self.headers = None if level.keepalive else {"Connection": "close"}
        self.timeout = httpx.Timeout(
            connect=level.connect_timeout,
            read=level.read_timeout,
            write=level.read_timeout,
            pool=None,
        )

    def ext(self, client: HttpxClient) -> dict[str, Any]:
        return {"trace": client._trace}

    def client(self) -> HttpxClient:
        return HttpxClient(self)
