"""The monitor's own requests are not the server's: an attached Apache's mod_status polls
(one connection a second while a worker is free) are neither its accepts nor its queue
wait when eBPF counts them (were: an idle Apache prefork read 3 accepts in 3 s and an
accept imbalance, Jain 0.43, all of them our polls; an event MPM under keep-alive load
'accepts: Jain 0.70 top 82%' from 3 polls and no client accept)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from conftest import wait_until
from readers import accepts_bpf
from realservers import RealServer, real_server  # noqa: F401 - the fixture
from sources.sampler import Sampler
from test_realservers import _client
from values.snapshot import Snapshot

REASON = accepts_bpf.unavailable()


def _accepts(s: Snapshot) -> int:
    return sum(w.accepts_total or 0 for w in s.workers if w.kind.value == "process")


def _queued(s: Snapshot) -> int:
    return s.phases.queue.count if s.phases is not None and s.phases.queue is not None else -1


@pytest.mark.timeout(60)
@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_the_status_polls_are_not_counted_as_the_servers_accepts_or_queue_wait(
    real_server: Callable[..., RealServer],  # noqa: F811
) -> None:
    srv = real_server("apache", mpm="prefork", max_workers=4, start=2)
    sampler = Sampler.attach(port=srv.port, exact_accepts=True, status_url="auto")
    try:
        status = sampler.source.status  # type: ignore[attr-defined]
        assert status is not None
        last: list[Snapshot] = []

        def polled(n: int) -> bool:
            last.append(sampler.sample())
            time.sleep(0.1)
            return status.polls >= n and status.states() != {}

        wait_until(lambda: polled(3), 30, "three mod_status polls")
        assert _accepts(last[-1]) == 0 and _queued(last[-1]) == 0, (
            f"{status.polls} polls read as accepts {_accepts(last[-1])}, "
            f"queue wait of {_queued(last[-1])} connections"
        )
        clients = [_client(srv.port) for _ in range(2)]  # the server's own: counted
        for c in clients:
            c.close()
        more = status.polls + 2
        wait_until(lambda: polled(more), 30, "two more polls")
        assert _accepts(last[-1]) == 2 and _queued(last[-1]) == 2
    finally:
        sampler.close()
