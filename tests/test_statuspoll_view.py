"""A sample's mod_status line and its states come from one read of mod_status.

CI once saw an attached Apache event sample say "mod_status ... (event: 1 busy, 7 idle)"
with every thread's state unknown: the poll ended between the sampler reading the states
(none yet) and the line (read afterwards). Here the poll is made to end at that moment.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator

import pytest

from conftest import wait_until
from realservers import RealServer, real_server  # noqa: F401 - the fixture
from sources.sampler import Sampler
from values.snapshot import Kind, WorkerState


@pytest.fixture
def fake_status() -> Iterator[Callable[[int], str]]:
    """A mod_status page (prefork, one slot writing) that names `pid` as its slot's
    process; returns a function giving its URL for a pid."""
    pid_of: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if "?auto" in self.path:
                body = b"ServerMPM: prefork\nBusyWorkers: 1\nIdleWorkers: 0\nScoreboard: W\n"
            else:
                row = f"<tr><td><b>0-0</b></td><td>{pid_of[0]}</td></tr>"
                body = f"<html><table>{row}</table></html>".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()

    def url(pid: int) -> str:
        pid_of.append(pid)
        return f"http://127.0.0.1:{srv.server_address[1]}/server-status"

    try:
        yield url
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.timeout(60)
def test_a_poll_ending_mid_sample_is_used_from_the_next_sample_line_and_states_alike(
    real_server: Callable[..., RealServer],  # noqa: F811
    fake_status: Callable[[int], str],
) -> None:
    srv = real_server("http.server")  # idle: from outside it reads waiting
    sampler = Sampler.attach(port=srv.port, status_url=fake_status(srv.root))
    source = sampler.source
    status = source.status  # type: ignore[attr-defined]
    release = threading.Event()
    poll = status._poll

    def held_poll():  # type: ignore[no-untyped-def]
        release.wait(20)
        return poll()

    status._poll = held_poll
    process = source._process  # type: ignore[attr-defined]
    armed = threading.Event()

    def ending_the_poll(*args, **kwargs):  # type: ignore[no-untyped-def]
        if armed.is_set() and not release.is_set():  # the poll ends while this sample
            release.set()  # reads the workers
            wait_until(lambda: status.latest is not None, 10, "the poll's end")
        return process(*args, **kwargs)

    source._process = ending_the_poll  # type: ignore[attr-defined]
    try:
        first = sampler.sample()  # asks for a poll (held until the next sample)
        wait_until(lambda: status._go.is_set() is False, 5, "the poll under way")
        armed.set()
        second = sampler.sample()  # the poll ends in the middle of it
        third = sampler.sample()
        for snap in (first, second, third):
            assert snap.model is not None and snap.model.status is not None
            (row,) = [w for w in snap.workers if w.kind == Kind.PROCESS]
            from_status = snap.model.status.startswith("mod_status")
            assert (row.state == WorkerState.WRITING) == from_status, (
                snap.model.status,
                row.state,
            )
        assert second.model is not None and not (second.model.status or "").startswith("mod_status")
        assert third.model is not None and (third.model.status or "").startswith("mod_status")
    finally:
        release.set()
        sampler.close()
