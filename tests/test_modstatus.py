"""mod_status ?auto parser: on output captured from Debian's Apache 2.4, and live."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from conftest import read_response, wait_until
from readers import modstatus
from readers.modstatus import BUSY_GLYPHS, ModStatusError
from realservers import real_server  # noqa: F401 - the fixture
from values.snapshot import WorkerState

DATA = Path(__file__).parent / "data"


def test_captured_prefork_output_parses_to_its_scoreboard_and_counts() -> None:
    st = modstatus.parse_auto((DATA / "mod_status_prefork.txt").read_text())
    assert st.mpm == "prefork"
    assert st.scoreboard.startswith("KKKWS")
    assert (st.busy, st.idle) == (4, 0)
    assert sum(st.count(g) for g in BUSY_GLYPHS) == st.busy
    assert st.slots()[:3] == ["K", "K", "K"]


def test_captured_event_output_is_cut_per_process_by_thread_limit() -> None:
    st = modstatus.parse_auto((DATA / "mod_status_event.txt").read_text())
    assert st.mpm == "event" and st.processes == 2
    assert (st.busy, st.idle) == (1, 7)
    assert st.count("_") == st.idle
    assert st.slots(4) == ["____", "W___"]
    with pytest.raises(ValueError, match="threads_per_slot"):
        st.slots()


def test_pids_per_slot_come_from_the_html_page() -> None:
    assert modstatus.parse_html_pids((DATA / "mod_status_event.html").read_text()) == {
        0: 2734,
        1: 2735,
    }
    pids = modstatus.parse_html_pids((DATA / "mod_status_prefork.html").read_text())
    assert pids and all(p > 0 for p in pids.values())


def test_event_glyphs_map_onto_each_child_by_its_slot_and_thread_limit() -> None:
    """One glyph per thread slot, ThreadLimit of them per process slot (not in ?auto: the
    cut whose active slots are the HTML table's); a wider or narrower cut is refused."""
    st = modstatus.parse_auto((DATA / "mod_status_event.txt").read_text())
    pids = modstatus.parse_html_pids((DATA / "mod_status_event.html").read_text())
    assert modstatus.thread_limit(st.scoreboard, set(pids)) == 4
    w, _ = WorkerState.WRITING, WorkerState.WAITING
    assert modstatus.states_by_pid(st, pids) == {2734: (_, _, _, _), 2735: (w, _, _, _)}
    # 4 children of 4 threads in a 32-slot board (ThreadLimit 8): slot 1's threads at 8..11
    board = "_W__...._R__....................".ljust(32, ".")
    wide = dataclasses.replace(st, scoreboard=board)
    assert modstatus.thread_limit(board, {0, 1}) == 8
    got = modstatus.states_by_pid(wide, {0: 10, 1: 11})
    assert got[11] == (_, WorkerState.READING, _, _)


def test_the_monitors_own_request_is_taken_out_of_the_scoreboard() -> None:
    """Its ExtendedStatus row (marked by a query argument) names the process serving it;
    that process's W was a free worker before our request came."""
    html = (DATA / "mod_status_prefork.html").read_text()
    slot = modstatus.serving(html, "GET /server-status?auto")
    assert slot is not None and slot[1] > 0
    st = modstatus.parse_auto((DATA / "mod_status_prefork.txt").read_text())
    assert st.scoreboard[slot[0]] == "W"
    mine = modstatus.without_own(st, slot[0], 1)
    assert (mine.busy, mine.idle) == (st.busy - 1, st.idle + 1)
    assert mine.scoreboard[slot[0]] == "_" and mine.count("W") == st.count("W") - 1
    assert modstatus.serving(html, "no such request") is None


def test_text_that_is_not_mod_status_is_a_clear_error() -> None:
    with pytest.raises(ModStatusError, match="not mod_status"):
        modstatus.parse_auto("<html>It works!</html>")
    with pytest.raises(ModStatusError, match="glyphs"):
        modstatus.parse_auto("BusyWorkers: 1\nIdleWorkers: 0\nScoreboard: W?\n")


def _keepalive_client(port: int) -> socket.socket:
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(c).status == 200
    return c


def test_live_prefork_shows_one_keepalive_glyph_per_idle_client_and_the_right_pids(
    real_server,  # noqa: F811
) -> None:
    srv = real_server("apache", mpm="prefork", max_workers=6, start=2, keepalive_timeout=30)
    url = f"http://127.0.0.1:{srv.port}/server-status"
    clients = [_keepalive_client(srv.port) for _ in range(3)]
    try:
        wait_until(lambda: modstatus.fetch(url).count("K") == 3, 10, "3 keep-alive slots")
        st = modstatus.fetch(url)
        # the 3 keep-alive slots, the one answering, maybe one still closing an earlier
        # status request: Apache's own count agrees with its glyphs
        assert st.count("K") == 3
        assert st.busy == sum(st.count(g) for g in BUSY_GLYPHS) >= 4
        import urllib.request

        html = urllib.request.urlopen(url, timeout=5).read().decode()
        pids = modstatus.parse_html_pids(html)
        assert set(pids.values()) <= set(srv.children())
        for slot, glyph in enumerate(st.slots()):
            if glyph == "K":
                assert slot in pids
    finally:
        for c in clients:
            c.close()
