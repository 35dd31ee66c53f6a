#!/usr/bin/env python3
"""The README's attach screenshot: real Apache httpd (prefork, MaxRequestWorkers 8) starved
by idle keep-alive clients, watched from outside by `serverscope attach`'s monitor.

    .venv/bin/python screenshots/attach_apache_prefork.py     # needs Debian's apache2

It starts Apache through serverscope's originals launcher (its own config, loopback, a free
port), drives the keepalive-idle preset at it, opens the attach monitor on Apache's root
pid as `serverscope attach --pid` would, waits until the starvation diagnosis is on screen
with live client figures, saves an SVG, and stops everything it started.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from loadgen.levels import PRESETS  # noqa: E402
from loadgen.runner import LoadRunner  # noqa: E402
from originals.launch import Original  # noqa: E402
from servers.config import ServerConfig  # noqa: E402
from telemetry.analyser import Analyser  # noqa: E402
from telemetry.sampler import Sampler  # noqa: E402
from tui.app import ServerscopeApp  # noqa: E402
from tui.attach_feed import AttachFeed  # noqa: E402
from tui.screens.attach import AttachScreen  # noqa: E402

MIN_SETTLE_S = 4.0


async def take(out: Path) -> str:
    server = Original(ServerConfig(model="apache:prefork", max_workers=8)).start()
    runner = None
    try:
        level = PRESETS["keepalive-idle"].with_(clients=40, ramp=1, duration=60)
        runner = LoadRunner(server.url + "/", level).start()
        sampler = Sampler.attach(pid=server.root_pid, status_url="auto")
        sampler.load = runner.stats
        feed = AttachFeed(sampler, Analyser(), on_close=[runner.stop], load_pid=None)
        screen = AttachScreen(feed)
        app = ServerscopeApp(screen)
        note = ""
        async with app.run_test(size=(120, 36)) as pilot:
            start = time.monotonic()
            while True:
                await pilot.pause(0.25)
                snap = screen.last
                rules = {d.rule for d in snap.diagnoses} if snap else set()
                waited = time.monotonic() - start
                if waited >= MIN_SETTLE_S and "starvation" in rules:
                    note = f"starvation after {waited:.1f} s"
                    screen.frozen = True
                    break
                if waited >= 40:
                    note = "starvation not seen within 40 s; saved anyway"
                    break
            await pilot.pause(0.3)
            path = app.save_screenshot(filename="attach_apache_prefork.svg", path=str(out))
            await pilot.press("q")
        return f"{path}: {note}"
    finally:
        if runner is not None:
            runner.stop()
        server.stop()


if __name__ == "__main__":
    print(asyncio.run(take(ROOT / "screenshots")))
