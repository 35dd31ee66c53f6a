"""An accept queue reading one past its limit (17/16) is the truth, and the screen says why.

Linux counts a listener's queue full only when its length is above the backlog
(sk_acceptq_is_full: sk_ack_backlog > sk_max_ack_backlog), so `listen(fd, 16)` holds 17
connections: `ss -ltn` shows Recv-Q 17, Send-Q 16. The overflow demo's queue read "17/16"
with no word of it, which looks like a monitor's bug; the figure stays (clamping it to 16
would be false) and every place that shows it says why.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
import subprocess

import pytest

import synthetic
from conftest import wait_until
from judging import diagnosis
from judging.events import EventDeriver
from sources.sampler import Sampler
from values.units import ADMITS_ONE_MORE, PAST_LIMIT_NOTE, queue_figure

SS = shutil.which("ss")


def _ss(port: int) -> tuple[int, int] | None:
    assert SS is not None
    out = subprocess.run(
        [SS, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return (int(out[1]), int(out[2])) if out else None


@pytest.mark.skipif(SS is None, reason="`ss` is not installed: apt-get install -y iproute2")
def test_single_with_backlog_16_holds_17_as_ss_shows_and_every_view_says_why(
    start_server,  # type: ignore[no-untyped-def]
) -> None:
    sup = start_server("single", backlog=16)
    port = sup.port
    clients = []
    try:
        for _ in range(24):  # single takes one and waits for its request; 17 queue behind
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            clients.append(c)
        sampler = Sampler.for_supervisor(sup)
        try:
            # single takes one connection (when its loop gets the CPU) and waits for its
            # request; retransmitted SYNs refill the queue to 17 within a second or two
            wait_until(
                lambda: sampler.sample().listeners[0].queue == 17 and _ss(port) == (17, 16),
                10,
                "the sampler and ss at 17/16",
            )
            snap = sampler.sample()
        finally:
            sampler.close()
        [ln] = snap.listeners
        assert (ln.queue, ln.limit) == _ss(port) == (17, 16)
        assert ln.past_limit and ln.full
        assert queue_figure(ln.queue, ln.limit) == f"17/16 ({PAST_LIMIT_NOTE})"
        # the diagnosis, the event log and the headless view say it with the figure
        d = diagnosis.accept_queue_overflow([snap])
        assert d is not None and "queue 17/16 (full within" in d.message, d.message
        assert f"; {ADMITS_ONE_MORE})" in d.message, d.message
        log = [e.message for e in EventDeriver().step(snap) if e.kind == "overflow"]
        assert log == [f"accept queue overflow started, queue 17/16 ({PAST_LIMIT_NOTE})"]
        from rich.console import Console

        from text.attach import render

        console = Console(file=io.StringIO(), width=200, record=True)
        console.print(render(snap))
        assert f"queue 17 > limit 16: {PAST_LIMIT_NOTE}" in console.export_text()
    finally:
        for c in clients:
            c.close()


def test_the_backlog_panel_shows_17_of_16_and_why() -> None:
    from tui.app import ServerscopeApp
    from tui.backlog_panel import BacklogPanel
    from tui.screens.replay import ReplayScreen
    from tui.source import ReplaySource

    snap = synthetic.snapshot(model="single", workers=1, queue=17, limit=16, overflows_delta=9)
    app = ServerscopeApp(ReplayScreen(ReplaySource([snap], playing=False)))

    async def run() -> str:
        async with app.run_test(size=(120, 36)) as pilot:
            for _ in range(100):
                if app.lab.last is not None:
                    break
                await asyncio.sleep(0.05)
            await pilot.pause(0.2)
            shown = getattr(app.query_one(BacklogPanel), "_shown", None)
            return shown[0] if isinstance(shown, tuple) else str(shown)

    text = asyncio.run(run())
    assert "17/16" in text and PAST_LIMIT_NOTE in text, text
    # at or under the limit, no note
    assert queue_figure(16, 16) == "16/16" and queue_figure(3, None) == "3"
