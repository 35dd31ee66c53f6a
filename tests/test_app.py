"""The endpoints, without sockets."""

from __future__ import annotations

import time

import pytest

from servers import app
from servers.http import Request


def reply(target: str, method: str = "GET") -> app.Reply:
    return app.handle(Request(method, target, "HTTP/1.1"))


def test_root_and_unknown():
    assert reply("/").status == 200
    assert reply("/nope").status == 404
    assert reply("/", "POST").status == 405


def test_work_returns_exactly_bytes_and_io_for_the_caller():
    r = reply("/work?bytes=12345&io_ms=30")
    assert r.status == 200 and len(r.body) == 12345 and r.io_ms == 30


def test_work_burns_thread_cpu_time_not_wall_time():
    before = time.thread_time()
    r = reply("/work?cpu_ms=50")
    used = time.thread_time() - before
    assert r.status == 200
    assert 0.050 <= used < 0.5


@pytest.mark.parametrize(
    "query",
    [
        "cpu_ms=abc",
        "cpu_ms=-1",
        "io_ms=nan",
        "io_ms=60001",
        "bytes=16777217",
        "bytes=1.5",
        "color=red",
        "cpu_ms",
        "=&&",
    ],
)
def test_bad_parameters_are_400(query: str):
    assert reply("/work?" + query).status == 400
