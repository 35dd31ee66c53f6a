"""How dramatic is the default launch? Open the TUI as `serverscope` with no arguments
does (default model, load and knobs from commands.tui), headless (Textual's run_test, so the
TUI's own CPU competes with the server as on screen), N times, and print each launch's
top accept share: the largest worker's share of all accepts since the server started,
read from the scoreboard once the burst's clients are all connected.

    .venv/bin/python bench/default_launch.py [N] [serverscope options to try instead]

The bar (issue 12): a top share of at least 70% in at least 9 of 10 launches on a
2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from commands.main import build_parser
from commands.tui import default_config, level_from_args
from lab.session import Session
from tui.app import ServerscopeApp
from tui.screens.live import LiveScreen
from tui.source import LiveSource

SETTLE_S = 4.0  # seconds of load before reading the shares


async def launch(args: list[str]) -> list[int]:
    a = build_parser().parse_args(args)
    cfg = default_config(a)
    level = level_from_args(a)
    assert level is not None
    source = LiveSource(Session(cfg, level))
    screen = LiveScreen(source, load_duration=level.duration)
    app = ServerscopeApp(screen)
    try:
        async with app.run_test(size=(160, 50)):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                snap = screen.last
                c = snap.client if snap else None
                if c is not None and c.elapsed >= SETTLE_S:
                    break
                await asyncio.sleep(0.1)
            snap = screen.last
            assert snap is not None
            return [w.accepts_total or 0 for w in snap.live_workers]
    finally:
        source.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("n", type=int, nargs="?", default=10)
    p.add_argument("args", nargs=argparse.REMAINDER, help="serverscope options to try instead")
    o = p.parse_args()
    n = o.n
    shares = []
    for i in range(n):
        per = asyncio.run(launch(o.args))
        share = max(per) / sum(per) if sum(per) else 0.0
        shares.append(share)
        print(f"launch {i + 1}: top share {100 * share:.0f}%  accepts {per}", flush=True)
    ok = sum(1 for x in shares if x >= 0.70)
    print(f"{ok}/{n} launches with a top accept share >= 70%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
