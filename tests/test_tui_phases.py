"""The "where the time goes" panel (issue 16), driven by synthetic snapshots: the server's
and the selected worker's p50/p99 per phase, unknown never drawn as zero, one line with a
reason when nothing is measured, one line of p99s on a short screen."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import synthetic
import tui_scenarios
from tui.app import ServerscopeApp
from tui.phases_panel import PhasesPanel
from tui.screens.replay import ReplayScreen
from tui.source import ReplaySource
from values.snapshot import Snapshot


def _panel_text(
    snaps: list[Snapshot],
    size: tuple[int, int] = (120, 36),
    keys: tuple[str, ...] = (),
    after: Callable[[ServerscopeApp], None] | None = None,
) -> tuple[str, str]:
    """(the panel's plain text, its border title) once drawn, after pressing `keys`."""
    app = ServerscopeApp(ReplayScreen(ReplaySource(snaps, name="t", start_at=-1, playing=False)))

    async def go() -> tuple[str, str]:
        async with app.run_test(size=size) as pilot:
            deadline = time.monotonic() + 15
            while app.lab.last is None:
                assert time.monotonic() < deadline, "no frame in 15 s"
                await asyncio.sleep(0.05)
            for key in keys:
                await pilot.press(key)
            await pilot.pause(0.3)
            panel = app.query_one(PhasesPanel)
            lines = panel.render_lines(panel.region.reset_offset)  # type: ignore[attr-defined]
            rows = ["".join(seg.text for seg in line) for line in lines]
            inside = [r.strip("│ ") for r in rows if r.strip() and r.strip()[0] not in "─╭╰"]
            return "\n".join(inside), str(panel.border_title)

    return asyncio.run(go())


def test_the_panel_shows_the_server_s_and_the_selected_worker_s_phases() -> None:
    text, title = _panel_text(tui_scenarios.prefork_starving_phases())
    assert title == "where the time goes"
    assert "all p50/p99" in text and "w0 p50/p99" in text
    queue = next(line for line in text.splitlines() if "queue" in line)
    # the server's: 4 in 5 accepted waited 4.2 s, 1 in 5 7.0 s; worker 0's all 4.2 s
    # (quantiles are bucket midpoints, within 6.25%: 4.2 s reads 4.5 s unless capped by max)
    assert "4.5s/7.0s" in queue and "4.2s/4.2s" in queue
    service = next(line for line in text.splitlines() if "service" in line)
    assert "300µs/400µs" in service


def test_selecting_another_worker_shows_its_phases() -> None:
    snaps = synthetic.series(
        25, workers=3, queue_ms=[1.0, 90.0, 2.0], server_ms=0.5, service_ms=[3.0, 5.0, 8.0]
    )
    text, _ = _panel_text(snaps, keys=("down",))
    assert "w1 p50/p99" in text
    queue = next(line for line in text.splitlines() if "queue" in line)
    assert queue.split()[2] == "86ms/86ms"  # worker 1: 90 ms, read as its bucket midpoint


def test_nothing_measured_is_one_line_saying_so_never_zeros() -> None:
    text, _ = _panel_text(tui_scenarios.prefork_keepalive_idle())
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines == ["not measured in these snapshots"]
    attached = [dataclasses.replace(s, source="attach") for s in synthetic.series(10)]
    text, _ = _panel_text(attached)
    assert text.strip() == "unknown: attached, no scoreboard"
    # attach's own reason, when it gives one (ModelInfo.queue_note, from the attachq work)
    model = attached[-1].model
    if model is not None and hasattr(model, "queue_note"):
        why = dataclasses.replace(model, queue_note="queue wait: bpftrace not installed")
        text, _ = _panel_text([dataclasses.replace(s, model=why) for s in attached])
        assert text.strip() == "queue wait: bpftrace not installed"


def test_queue_wait_alone_shows_the_rest_as_unknown() -> None:
    # attach with eBPF: the server's queue wait only, nothing per worker
    snaps = synthetic.series(25, queue_ms=12.0, worker_phases=False)
    text, _ = _panel_text(snaps)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:] if line.strip()}
    assert rows["queue"][:2] == ["12ms/12ms", "unknown"]
    assert rows["server"][:2] == ["unknown", "unknown"]
    assert rows["service"][:2] == ["unknown", "unknown"]
    assert "0" not in "".join(rows["server"] + rows["service"])


def test_a_short_screen_gets_one_line_of_p99s() -> None:
    text, title = _panel_text(tui_scenarios.prefork_starving_phases(), size=(80, 24))
    assert title == "where the time goes, p99"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines == ["q 7.0s  srv 40µs  svc 400µs"]


def test_a_short_screen_says_unmeasured_in_the_title_line_alone() -> None:
    attached = [dataclasses.replace(s, source="attach") for s in synthetic.series(10)]
    text, title = _panel_text(attached, size=(80, 24))
    assert title == "time: unknown, attached server"
    assert text.strip() == ""
