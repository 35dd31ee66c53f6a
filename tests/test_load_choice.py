"""Choosing a load does what its name says: `burst` chosen while another load runs makes
the burst happen (new connections, all at once), where it used to keep the running load's
connections; and `serverscope load` against a port nobody listens on says so in one
line and fails, where it reported `refused 400` and exited 0."""

from __future__ import annotations

import socket
import time

import pytest

from conftest import wait_until
from lab.session import Session
from loadgen.levels import PRESETS
from servers.config import ServerConfig
from values.snapshot import Role


def _accepts(session: Session) -> int:
    snap = session.sample()
    assert snap is not None
    return sum(w.accepts_total or 0 for w in snap.workers if w.role == Role.WORKER)


@pytest.mark.slow
def test_choosing_burst_while_a_load_runs_opens_its_connections_at_once() -> None:
    # slow-io: 50 keep-alive clients; in place, burst kept 20 of their connections
    with Session(ServerConfig(model="many_accepts", workers=2), PRESETS["slow-io"]) as session:
        wait_until(lambda: _accepts(session) >= 50, 10, "slow-io's 50 connections")
        before = _accepts(session)
        session.set_level(PRESETS["burst"].with_(duration=10))
        t0 = time.monotonic()
        wait_until(lambda: _accepts(session) >= before + 20, 5, "the burst's 20 connections")
        took = time.monotonic() - t0
        runner = session.runner
        assert runner is not None
        stats = runner.stats()
        assert stats.level == "burst" and stats.clients == 20, stats
        # the burst's clients connected together (ramp 0), within a second of the choice
        assert took < 2.0, took
        # the + and - keys keep the run: the same load with other clients changes in place
        wait_until(lambda: runner.stats().connect_ms.count >= 20, 5, "the burst's connects")
        session.set_level(PRESETS["burst"].with_(duration=10, clients=10))
        assert session.runner is runner


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound, never listened: connects to it are refused
    return port


def test_load_against_a_closed_port_says_so_in_one_line_and_fails(capsys) -> None:  # type: ignore[no-untyped-def]
    from commands import main as cli

    port = _closed_port()
    code = cli.main(["load", f"http://127.0.0.1:{port}/", "--duration", "2"])
    out, err = capsys.readouterr()
    assert code != 0
    assert err.strip().count("\n") == 0, err
    assert "refused every connection" in err and f"127.0.0.1:{port}" in err, err
    assert "Requests/sec" not in out  # no summary of a run that never reached a server
