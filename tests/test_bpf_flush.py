"""bpftrace prints its counts when asked (AcceptCounter.flush), not on a timer: a sample's
counts are the kernel's as of its flush, and an agent sampling at 1 Hz pays one print of
every map a second instead of four."""

from __future__ import annotations

import os
import socket
import time

import pytest

from conftest import assert_all_gone
from readers import accepts_bpf
from readers.accepts_bpf import AcceptCounter
from readers.bpfscript import script

REASON = accepts_bpf.unavailable()


def test_the_program_prints_its_maps_on_request_only() -> None:
    for ports in ((), (8080,)):
        prog = script(1, 12345678, ports, changes=bool(ports))
        assert "interval:" not in prog
        assert "/args->which == 12345678/" in prog and "print(@a);" in prog


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_a_flush_holds_every_accept_made_before_it_and_none_comes_unasked() -> None:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    counter = AcceptCounter(os.getpid()).start()  # this process's own accepts
    bpf_pid = counter.proc.pid  # type: ignore[union-attr]
    held = []
    try:
        assert counter.flush(5.0)
        for n in (3, 5):
            for _ in range(n):
                held.append(socket.create_connection(lst.getsockname()))
                held.append(lst.accept()[0])
            assert counter.flush(5.0)  # at once: no wait for a timer's flush
            assert counter.per_pid().get(os.getpid(), 0) == len(held) // 2
        seen = counter.flushes
        # absence can only be shown over time: a timer at the old 250 ms printed 2+ here
        time.sleep(0.6)
        assert counter.flushes == seen
        changes = counter.changes()
        assert changes is None  # no ports: nothing counted (the gate's dump stays)
    finally:
        counter.stop()
        for c in [*held, lst]:
            c.close()
    assert_all_gone([bpf_pid])
