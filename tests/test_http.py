"""The sans-IO HTTP/1.1 layer on its own: no sockets."""

from __future__ import annotations

import pytest

from servers.http import INLINE_BODY, HttpConnection, Limits, ProtocolError, Request


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
    out = c.response(req, 200, b"hi").head
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
    assert b"Connection: close" in c.response(req, 200, b"x").head and c.must_close

    c = HttpConnection()
    c.feed(b"GET / HTTP/1.0\r\n\r\n")
    [req] = events(c)
    assert not req.keep_alive

    c = HttpConnection()
    c.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    [req] = events(c)
    assert req.keep_alive and b"Connection: keep-alive" in c.response(req, 200, b"x").head


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
    assert out.head.endswith(b"Content-Length: 5\r\n\r\n") and out.body is None


def test_a_large_body_is_not_copied_into_the_response():
    """Issue 23: `head + body` built a 16 MiB bytes per reply (two with a partial send)."""
    c = HttpConnection()
    c.feed(b"GET / HTTP/1.1\r\n\r\n")
    [req] = events(c)
    payload = b"x" * (INLINE_BODY + 1)
    out = c.response(req, 200, memoryview(payload))
    assert out.head.endswith(f"Content-Length: {len(payload)}\r\n\r\n".encode())
    assert out.body is not None and out.body.readonly and out.body.obj is payload
    assert out.size == len(out.head) + len(payload)
    c.feed(b"GET / HTTP/1.1\r\n\r\n")
    [req] = events(c)
    small = c.response(req, 200, b"y" * INLINE_BODY)  # small: one piece with its head
    assert small.body is None and small.head.endswith(b"y" * INLINE_BODY)


BLANK_LINES_BODY = b"a\r\n\r\n" * 40  # 240 bytes of body holding forty blank lines


def test_blank_lines_in_a_body_are_not_counted_as_pipelined_requests():
    """Issue 23 finding 6: the count of pipelined requests took a body's blank lines for
    request ends, so the 32nd plain GET after such a POST got 400."""
    c = HttpConnection()
    post = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(BLANK_LINES_BODY)
    c.feed(post + BLANK_LINES_BODY)
    assert [r.method for r in events(c)] == ["POST"]
    c.response(Request("POST", "/", "HTTP/1.1"), 405)
    for i in range(40):  # sequential GETs, one at a time, as curl or a browser sends them
        c.feed(b"GET / HTTP/1.1\r\n\r\n")
        [ev] = events(c)
        assert isinstance(ev, Request), (i, ev)
        c.response(ev, 200, b"x")
    # the body arriving after its head, in pieces: its blank lines are skipped too
    c = HttpConnection()
    c.feed(post)
    assert events(c) == []  # the head is in, the body is awaited
    c.feed(BLANK_LINES_BODY[:120])
    c.feed(BLANK_LINES_BODY[120:] + b"GET / HTTP/1.1\r\n\r\n")
    assert [r.method for r in events(c)] == ["POST", "GET"]


def test_a_real_pipeline_past_the_cap_still_gets_its_400_bodies_or_not():
    one = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n"  # a body that is a blank line
    c = HttpConnection()
    c.feed(one * 33)  # 66 blank lines, 33 requests: past the cap of 32
    got = events(c)
    assert [type(e).__name__ for e in got] == ["Request"] * 32 + ["ProtocolError"]
    assert got[-1].status == 400  # type: ignore[union-attr]
    c = HttpConnection()
    c.feed(one * 32)  # exactly the cap: all served
    assert len(events(c)) == 32 and not c.must_close
