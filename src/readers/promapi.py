"""Reading a Prometheus server's HTTP API (`/api/v1/query`, `/api/v1/query_range`).

Why httpx and not a PromQL library: the two endpoints are a POST and a JSON answer each,
and the libraries that wrap them (prometheus-api-client) pull in pandas and matplotlib;
httpx is already a dependency (the load generator's full-HTTP engine).

The loopback rule holds as everywhere: the URL must name a loopback address or `localhost`
(decided on the name as written, before any lookup) unless the user passes
`--allow-remote`; `trust_env=False`, so no proxy, .netrc or certificate file from the
environment bends where a query goes; no redirect is followed (one could leave loopback).
An answer is read up to MAX_ANSWER_BYTES: whatever is at the URL cannot bloat the reader.

Errors are one line each (`PromError`), naming the URL and what to do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from plumbing.loopback import loopback_address, refusal

TIMEOUT_S = 10.0  # one query: connect and answer
MAX_ANSWER_BYTES = 256 * 1024 * 1024  # ~1M series of a few labels; more is refused, in a line

Labels = Mapping[str, str]


class PromError(RuntimeError):
    """Prometheus could not be asked, or refused the query; the message is one line."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One series' value at the query's evaluation time (an instant vector's element)."""

    labels: Labels  # __name__ included when the query keeps it
    value: float | None  # None for NaN (Prometheus's 0/0) and +-Inf: unknown, not a zero


@dataclass(frozen=True, slots=True)
class Series:
    """One series over a range (a range query's matrix element): (unix time, value) pairs."""

    labels: Labels
    points: tuple[tuple[float, float | None], ...]


def _number(text: Any) -> float | None:
    try:
        x = float(text)
    except (TypeError, ValueError):
        raise PromError(f"a value that is not a number: {str(text)[:40]!r}") from None
    return x if math.isfinite(x) else None


def selector_value(text: str) -> str:
    """`text` as a PromQL string literal (double-quoted; JSON's escapes are PromQL's)."""
    return json.dumps(text)


def base_url(url: str, allow_remote: bool = False) -> str:
    """The API root to query for `url` (scheme, host, port and any path prefix such as
    `/prometheus`), its host replaced by the loopback address it names; PromError when it
    is not on loopback and `allow_remote` is False, or not an http(s) URL."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PromError(f"--prometheus {url!r}: give an http:// URL, e.g. http://127.0.0.1:9090")
    try:
        port = parts.port
    except ValueError:
        raise PromError(f"--prometheus {url!r}: bad port") from None
    netloc = parts.netloc
    local = loopback_address(parts.hostname)
    if local is not None:
        host = f"[{local}]" if ":" in local else local
        netloc = host if port is None else f"{host}:{port}"
    elif not allow_remote:
        raise PromError(
            refusal(
                "query", parts.hostname, "pass --allow-remote to read a Prometheus on another host"
            )
        )
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class PromClient:
    """Instant and range queries against one Prometheus; `close()` ends its connections.

    `transport` is for tests (httpx.MockTransport); the client never reads the proxy
    settings of the environment whatever it is given."""

    def __init__(
        self,
        url: str,
        *,
        allow_remote: bool = False,
        timeout: float = TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.base = base_url(url, allow_remote)
        self._http = httpx.Client(
            timeout=timeout,
            trust_env=False,  # no proxy from the environment: the loopback rule holds
            follow_redirects=False,  # a redirect could leave loopback
            headers={"User-Agent": "serverscope-fleet"},
            transport=transport,
        )
        self.queries = 0  # queries asked (for the notes' and the bench's figures)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PromClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the two endpoints --------------------------------------------------------------
    def query(self, promql: str, at: float) -> list[Sample]:
        """The instant vector `promql` evaluates to at unix time `at` (a scalar or a string
        answer is refused: every query here is a vector)."""
        data = self._ask("query", {"query": promql, "time": f"{at:.3f}"})
        if data.get("resultType") != "vector":
            raise PromError(f"expected a vector for {promql[:60]!r}, got {data.get('resultType')}")
        out = []
        for r in data.get("result") or ():
            value = r.get("value")
            if not isinstance(value, list) or len(value) != 2:
                raise PromError(f"a sample without [time, value] for {promql[:60]!r}")
            out.append(Sample(_labels(r), _number(value[1])))
        return out

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        """The matrix `promql` evaluates to every `step` seconds from `start` to `end`."""
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        params["step"] = f"{max(step, 0.001):.3f}"
        data = self._ask("query_range", params)
        if data.get("resultType") != "matrix":
            raise PromError(f"expected a matrix for {promql[:60]!r}, got {data.get('resultType')}")
        out = []
        for r in data.get("result") or ():
            points = tuple((float(t), _number(v)) for t, v in r.get("values") or ())
            out.append(Series(_labels(r), points))
        return out

    def _ask(self, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base}/api/v1/{endpoint}"
        self.queries += 1
        try:
            with self._http.stream("POST", url, data=params) as r:
                body = _read_bounded(r, url)
                status = r.status_code
        except httpx.ConnectError as e:
            raise PromError(f"cannot reach Prometheus at {self.url}: {_reason(e)}") from None
        except httpx.TimeoutException:
            raise PromError(f"Prometheus at {self.url} did not answer in time") from None
        except httpx.HTTPError as e:
            raise PromError(f"Prometheus at {self.url}: {_reason(e)}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
            what = "a redirect (not followed)" if 300 <= status < 400 else f"HTTP {status}"
            raise PromError(
                f"{url} did not answer as Prometheus's HTTP API ({what}): is --prometheus "
                "the Prometheus server's own URL, e.g. http://127.0.0.1:9090?"
            )
        if answer["status"] == "error":
            error = str(answer.get("error", "?"))[:200]
            raise PromError(f"Prometheus refused {params['query'][:80]!r}: {error}")
        data = answer.get("data")
        if not isinstance(data, dict):
            raise PromError(f"{url}: an answer without data")
        return data


def _labels(r: Any) -> dict[str, str]:
    metric = r.get("metric") if isinstance(r, dict) else None
    if not isinstance(metric, dict):
        raise PromError("a result without its labels")
    return {str(k): str(v) for k, v in metric.items()}


def _read_bounded(r: httpx.Response, url: str) -> bytes:
    chunks = []
    size = 0
    for chunk in r.iter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise PromError(
                f"{url}: an answer over {MAX_ANSWER_BYTES >> 20} MiB, not read (narrow it: "
                "--job NAME)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "refused" in text.lower():
        return "connection refused (is Prometheus running there?)"
    return text.splitlines()[0][:160]
