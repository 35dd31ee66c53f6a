"""The sans-IO HTTP/1.1 layer on its own: no sockets."""

from __future__ import annotations

import pytest

from servers.http import HttpConnection, Limits, ProtocolError, Request


def events(conn: HttpConnection) -> list[Request | ProtocolError]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
        if isinstance(ev, ProtocolError):
            break
    return out


def test_simple_get_keeps_alive_by_default():
    c = HttpConnection()
    c.feed(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    [req] = events(c)
    assert (req.method, req.path, req.query, req.keep_alive) == ("GET", "/a", "b=1", True)
    out = c.response(req, 200, b"hi")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nhi")
    assert b"Connection: close" not in out and not c.must_close and c.idle


def test_bytes_arriving_one_at_a_time():
    c = HttpConnection()
    raw = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    got = []
    for i in range(len(raw)):
        c.feed(raw[i : i + 1])
        got += events(c)
    assert len(got) == 1 and got[0].body == b"hello"


def test_pipelined_requests_come_out_in_order():
    c = HttpConnection()
    c.feed(b"".join(f"GET /{i} HTTP/1.1\r\n\r\n".encode() for i in range(5)))
    assert [r.path for r in events(c)] == [f"/{i}" for i in range(5)]


def test_connection_close_and_http10():
    c = HttpConnection()
    c.feed(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    [req] = events(c)
    assert not req.keep_alive
    assert b"Connection: close" in c.response(req, 200, b"x") and c.must_close

    c = HttpConnection()
    c.feed(b"GET / HTTP/1.0\r\n\r\n")
    [req] = events(c)
    assert not req.keep_alive

    c = HttpConnection()
    c.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    [req] = events(c)
    assert req.keep_alive and b"Connection: keep-alive" in c.response(req, 200, b"x")


def test_max_keepalive_requests_closes_the_last_one():
    c = HttpConnection(Limits(max_keepalive_requests=3))
    c.feed(b"GET / HTTP/1.1\r\n\r\n" * 5)
    seen = []
    while (req := c.next_event()) is not None:
        seen.append(req.keep_alive)
        c.response(req, 200, b"x")
    assert seen == [True, True, False] and c.must_close


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"HELLO\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\n\r\n", 505),
        (b"GET / FTP/1.1\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET nopath HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000, 431),  # no end of headers in sight
        (b"\x00\x01\x02\xff\r\n\r\n", 400),
    ],
)
def test_bad_input_gets_its_status_and_closes(raw: bytes, status: int):
    c = HttpConnection()
    c.feed(raw)
    [ev] = events(c)
    assert isinstance(ev, ProtocolError) and ev.status == status
    out = c.error_response(ev)
    assert out.startswith(f"HTTP/1.1 {status} ".encode()) and b"Connection: close" in out
    assert c.must_close and c.next_event() is None


def test_body_of_exactly_the_limit_is_accepted():
    c = HttpConnection()
    c.feed(b"POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n" + b"z" * 1048576)
    [req] = events(c)
    assert len(req.body) == 1048576


def test_head_response_has_no_body():
    c = HttpConnection()
    c.feed(b"HEAD / HTTP/1.1\r\n\r\n")
    [req] = events(c)
    out = c.response(req, 200, b"hello")
    assert out.endswith(b"Content-Length: 5\r\n\r\n")
