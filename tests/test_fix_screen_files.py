"""The fix screen (f) keeps its recordings only with a verdict that names them: a fix that
ended without one (a run failed, nothing to fix, the user left) removes its temporary
directory and names no `serverscope diff` line for files that are not there. Seen: 191
`serverscope-fix-*` directories in the machine's temporary directory, up to 1.6 MB each,
and the screen's line `serverscope diff .../before.jsonl .../after.jsonl` after a run
that made no after.jsonl."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from lab.session import Session
from loadgen.levels import PRESETS
from servers.config import ServerConfig
from test_fix import fix_on_skew, wait_for
from tui.app import ServerscopeApp
from tui.screens import fix as fix_screen
from tui.screens.live import LiveScreen
from tui.source import LiveSource


def test_a_fix_without_a_verdict_leaves_no_directory_and_names_no_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failed_run(cfg, level, *, period, record, stop, on_sample, faults):  # type: ignore[no-untyped-def]
        open(record, "w").close()  # the before run began its recording, then failed
        return SimpleNamespace(
            ok=False, interrupted=False, server_error="it died", load_error=None, faults=[]
        )

    monkeypatch.setattr(fix_screen, "run_headless", failed_run)

    async def go() -> None:
        level = PRESETS["steady"].with_(clients=4, rate=50, duration=30)
        source = LiveSource(Session(ServerConfig(model="many_accepts", workers=2), level))
        app = ServerscopeApp(LiveScreen(source, load_duration=30, fix_seconds=2))
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(lambda: app.lab.last is not None, what="the first frame")
            screen = await fix_on_skew(app, pilot)
            await wait_for(lambda: screen.outcome is not None, 30, "the outcome")
            await pilot.pause(0.2)
            assert screen.outcome is not None and screen.outcome.verdict is None
            assert "it died" in str(screen.query_one("#fix-verdict").content)
            assert "serverscope diff" not in str(screen.query_one("#fix-files").content)
            assert not screen.folder.exists()
            await pilot.press("q")
            await wait_for(lambda: source.closed, what="the session to close")

    asyncio.run(go())
