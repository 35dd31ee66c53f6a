"""The scoreboard across processes: workers write their slots, another process reads."""

from __future__ import annotations

import os
import threading

from servers.scoreboard import Scoreboard
from servers.slots import Kind, Role, State


def test_a_forked_writer_is_seen_by_the_reader():
    board = Scoreboard.create(nslots=1024)
    try:
        assert board.nslots >= 1024
        pid = os.fork()
        if pid == 0:
            w = board.claim(700)
            w.accepted()
            w.served(123)
            w.state(State.KEEPALIVE)
            os._exit(0)
        os.waitpid(pid, 0)
        snap = board.read()
        assert len(snap.slots) == 701
        s = snap.slots[700]
        assert (s.pid, s.tid, s.state, s.accepted, s.open, s.requests, s.bytes_sent) == (
            pid,
            pid,
            State.KEEPALIVE,
            1,
            1,
            1,
            123,
        )
        assert snap.slots[0].state == State.EMPTY
        board.mark_dead(700, -9)
        snap = board.read()
        assert snap.slots[700].state == State.DEAD and snap.model.deaths == 1
        assert snap.model.last_death_pid == pid
    finally:
        board.close()


def test_thread_slots_carry_their_tid():
    board = Scoreboard.create(nslots=8)
    try:
        tids = []

        def run(i: int) -> None:
            board.claim(i, kind=Kind.THREAD, group=0).state(State.WAITING)
            tids.append(threading.get_native_id())

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        snap = board.read()
        assert sorted(s.tid for s in snap.slots) == sorted(tids)
        assert all(s.is_thread and s.pid == os.getpid() for s in snap.slots)
        assert [s.state.glyph for s in snap.slots] == ["_", "_", "_"]
    finally:
        board.close()


def test_kind_and_role_read_back_as_enums_in_the_unchanged_layout():
    import ctypes

    from servers import scoreboard

    # the shared-memory layout the telemetry side maps: 80-byte slots after a 384-byte header
    assert ctypes.sizeof(scoreboard._Slot) == 80 and scoreboard._HEADER_SIZE == 384
    board = Scoreboard.create(nslots=4)
    try:
        board.claim(0)
        board.claim(1, kind=Kind.THREAD, group=0, listener=0, role=Role.LISTENER)
        a, b = board.read().slots
        assert (a.kind, a.role) == (Kind.PROCESS, Role.WORKER)
        assert b.kind is Kind.THREAD and b.role is Role.LISTENER and b.listener == 0
        assert b.kind == 1 and b.role == 1  # IntEnum: readers comparing ints still agree
    finally:
        board.close()
