"""A response's status line and headers, as every model sends them (servers.http): built
once per distinct (status, length, type, keep-alive, version) and cached, since most
replies repeat one (serverscope's servers send no Date)."""

from __future__ import annotations

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_HEAD_CACHE: dict[tuple[int, int, str, bool, str], bytes] = {}


def response_head(status: int, length: int, ctype: str, keep_alive: bool, version: str) -> bytes:
    """The head of a response of `length` bytes of `ctype`."""
    key = (status, length, ctype, keep_alive, version)
    cached = _HEAD_CACHE.get(key)
    if cached is not None:
        return cached
    conn = ""
    if keep_alive and version == "HTTP/1.0":
        conn = "Connection: keep-alive\r\n"
    elif not keep_alive:
        conn = "Connection: close\r\n"
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Server: serverscope\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\n{conn}\r\n"
    ).encode("latin-1")
    if length <= 4096 and len(_HEAD_CACHE) < 4096:
        _HEAD_CACHE[key] = head
    return head
