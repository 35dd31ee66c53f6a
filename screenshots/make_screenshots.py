#!/usr/bin/env python3
"""Make the README's screenshots: the live TUI against real servers on loopback.

    .venv/bin/python screenshots/make_screenshots.py            # all of them, 120x36
    .venv/bin/python screenshots/make_screenshots.py --only reuseport_paused --size 100x30

Each scenario starts a model and a load (as `serverscope --model M --load P` would), waits
until the phenomenon it shows is on screen (its diagnosis, or a time limit) AND the clients'
figures are live (requests completed and a latency, not the `0 req/s` and `-` of the
first half second), at least MIN_SETTLE_S after the first frame, then saves an SVG
with `App.save_screenshot`, then quits the app, which stops the server and the load.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lab.catalogue import SCENARIOS  # noqa: E402
from lab.session import Session  # noqa: E402
from loadgen.levels import PRESETS, LoadLevel  # noqa: E402
from servers import models  # noqa: E402
from servers.config import ServerConfig  # noqa: E402
from tui.app import ServerscopeApp  # noqa: E402
from tui.screens.live import LiveScreen  # noqa: E402
from tui.source import LiveSource  # noqa: E402

MIN_SETTLE_S = 3.0  # no shot before this: the panels' rates need a few samples


def clients_live(screen: LiveScreen) -> bool:
    """The clients panel shows live figures: requests completed, so a latency (a rate of
    0 req/s can be the truth, e.g. every client stuck behind a paused worker)."""
    c = screen.last.client if screen.last else None
    return c is not None and c.requests > 0 and c.latency_ms.count > 0


@dataclass(frozen=True)
class Shot:
    name: str
    config: ServerConfig
    level: LoadLevel
    expect: str  # diagnosis rule to wait for ("" : just wait `seconds`)
    seconds: float  # the longest to wait
    settle: float = 0.0  # at least this long before the shot
    setup: Callable[[LiveScreen], Awaitable[None]] | None = None
    ready: Callable[[LiveScreen], bool] | None = None  # and this holds (if given)


async def pause_worker_1(screen: LiveScreen) -> None:
    """SIGSTOP the worker in slot 1 (select it first, as a user would with the arrows)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        snap = screen.last
        worker = next((w for w in snap.live_workers if w.slot == 1), None) if snap else None
        if worker is not None:
            screen.selected = worker.key
            screen.fault("pause")
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("no worker in slot 1 to pause")


def queue_wait_seen(screen: LiveScreen) -> bool:
    """The window holds connections accepted after waiting in the queue (queue wait is
    timed at accept(), so a pool pinned the whole window has none to show)."""
    ph = screen.last.window_phases if screen.last else None
    return ph is not None and ph.queue is not None and ph.queue.count > 0


SHOTS = [
    Shot(
        "many_accepts_burst",
        ServerConfig(model="many_accepts", workers=4),
        PRESETS["burst"].with_(duration=60),
        expect="accept_skew",  # shows as the 20 clients connect at once: shoot it then
        seconds=10,
    ),
    Shot(
        "prefork_keepalive_idle",
        # MaxRequestWorkers 32 (not 256): the same starvation, without 256 processes on a laptop
        ServerConfig(model="prefork", max_workers=32),
        PRESETS["keepalive-idle"].with_(duration=60),
        expect="starvation",
        seconds=40,
        settle=6.0,
    ),
    Shot(
        "prefork_phases",
        # the same starvation with KeepAliveTimeout 1.5 s, shorter than the clients' 2 s
        # idle: children close idle connections and take the next queued one, so the
        # window holds connections accepted after waiting (issue 16's panel and message)
        ServerConfig(model="prefork", max_workers=32, keepalive_timeout=1.5),
        PRESETS["keepalive-idle"].with_(duration=60),
        expect="starvation",
        seconds=45,
        settle=20.0,
        ready=queue_wait_seen,
    ),
    Shot(
        "event_keepalive_idle",
        ServerConfig(model="event", workers=5),  # 5 x 25 threads: room for 300 clients
        PRESETS["keepalive-idle"].with_(duration=60),
        expect="",
        seconds=8,
        settle=8.0,
    ),
    Shot(
        "single_storm_overflow",
        # the overflow demo's step: a 16-slot queue that 100 storming clients fill at once,
        # with requests that cost 20 ms of CPU so the queue stays full (its own load level)
        SCENARIOS["overflow"].steps[0].config,
        SCENARIOS["overflow"].steps[0].level.with_(duration=60),
        expect="accept_queue_overflow",
        seconds=15,
        settle=3.0,
    ),
    Shot(
        "goroutines_gil",
        SCENARIOS["gil"].steps[0].config,
        SCENARIOS["gil"].steps[0].level.with_(duration=60),
        expect="gil_cap",
        seconds=15,
        settle=3.0,
    ),
    Shot(
        "reuseport_paused_worker",
        ServerConfig(model="reuseport", workers=4),
        PRESETS["storm"].with_(clients=40, duration=60),
        expect="reuseport_backlog",
        seconds=10,
        settle=3.0,
        setup=pause_worker_1,
    ),
]


async def take(shot: Shot, out: Path, size: tuple[int, int]) -> str:
    source = LiveSource(Session(shot.config, shot.level))
    screen = LiveScreen(source, load_duration=shot.level.duration)
    app = ServerscopeApp(screen)
    note = ""
    async with app.run_test(size=size) as pilot:
        began = time.monotonic()
        while screen.last is None:
            if screen.startup_error:
                return f"failed to start: {screen.startup_error}"
            await pilot.pause(0.1)
        if shot.setup is not None:
            await asyncio.sleep(1.0)
            await shot.setup(screen)
        start = time.monotonic()
        while True:
            await pilot.pause(0.25)
            waited = time.monotonic() - start
            rules = {d.rule for d in screen.last.diagnoses} if screen.last else set()
            settled = waited >= max(shot.settle, MIN_SETTLE_S) and clients_live(screen)
            ready = shot.ready is None or shot.ready(screen)
            if settled and ready and (not shot.expect or shot.expect in rules):
                note = f"{shot.expect or 'shown'} after {time.monotonic() - began:.1f} s"
                screen.frozen = True  # hold this frame (as the space key does) for the shot
                break
            if waited >= shot.seconds:
                note = f"{shot.expect} not seen within {shot.seconds:g} s; saved anyway"
                break
        await pilot.pause(0.3)
        path = app.save_screenshot(filename=f"{shot.name}.svg", path=str(out))
        await pilot.press("q")
        while not source.closed:
            await pilot.pause(0.1)
    return f"{path}: {note}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "screenshots"), help="directory for the SVGs")
    p.add_argument("--size", default="120x36", help="terminal size, COLSxROWS (120x36)")
    p.add_argument("--only", action="append", choices=[s.name for s in SHOTS])
    a = p.parse_args()
    cols, rows = (int(x) for x in a.size.lower().split("x"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    have = {s.name for s in models.available()}
    failed = 0
    for shot in SHOTS:
        if a.only and shot.name not in a.only:
            continue
        if shot.config.model not in have:
            print(f"{shot.name}: skipped, model {shot.config.model} is not built yet")
            failed += 1
            continue
        print(asyncio.run(take(shot, out, (cols, rows))), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
