"""What the TUI says on real servers, checked on synthetic snapshots shaped like them: a
thread, a master or a listener is never drawn or counted as a worker; a stopped lab
claims nothing live; the load dialog's words match its fields; the phases panel opens on
a worker that serves. (Real-server checks of the same shapes: test_tui_attach.py.)"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from textual.widget import Widget

import synthetic
import tui_scenarios
from tui.app import ServerscopeApp
from tui.frame import Frame
from tui.phases_panel import PhasesPanel
from tui.scoreboard_grid import ScoreboardGrid, summary
from tui.screens.lab import LabScreen
from tui.screens.replay import ReplayScreen
from tui.source import ReplaySource
from tui.worker_table import WorkerTable
from values.snapshot import Role, Snapshot


def screen_text(app: ServerscopeApp) -> list[str]:
    """The screen as the terminal shows it, one string per row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def widget_text(app: ServerscopeApp, widget: Widget) -> str:
    """What `widget` shows on screen (its border too), one line per row."""
    r = widget.region
    return "\n".join(row[r.x : r.right] for row in screen_text(app)[r.y : r.bottom])


def on_screen(
    snaps: list[Snapshot],
    check: Callable[[ServerscopeApp, LabScreen], Awaitable[None] | None],
    size: tuple[int, int] = (120, 36),
    screen: LabScreen | None = None,
) -> None:
    """Draw the last of `snaps` on the replay screen, then run `check(app, screen)`."""

    async def go() -> None:
        lab = screen or ReplayScreen(ReplaySource(snaps, name="t", start_at=-1, playing=False))
        app = ServerscopeApp(lab)
        async with app.run_test(size=size) as pilot:
            for _ in range(200):
                if lab.last is not None:
                    break
                await pilot.pause(0.02)
            # the panels draw the snapshot after the screen takes it: a synchronous check
            # is asked again until it holds (a busy machine draws late), for up to 5 s
            deadline = time.monotonic() + 5.0
            while True:
                await pilot.pause(0.05)
                try:
                    result = check(app, lab)
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    continue
                if result is not None:
                    await result
                return

    asyncio.run(go())


# -- finding 6: the grid shows workers, one cell each ------------------------------------------


def test_the_grid_of_an_original_has_a_cell_per_worker_not_for_its_master_and_threads() -> None:
    """apache:worker as an original: 4 children, a master, 108 thread rows. It drew 113
    cells ('_' for the master, '?' for every thread) under "4 workers"."""
    snap = tui_scenarios.original_apache_worker()

    def check(app: ServerscopeApp, lab: LabScreen) -> None:
        grid = app.query_one(ScoreboardGrid)
        drawn = "".join(grid.render_line(y).text for y in range(grid.size.height)).strip()
        assert drawn == "????", drawn
        title = str(app.query_one("#scoreboard-panel").border_title)
        assert title.startswith(("scoreboard · 4 workers ·", "4 workers ·")), title
        assert "+108 threads" in title, title

    on_screen([snap], check)


def test_the_event_grid_draws_no_listener_beside_0_busy() -> None:
    """event: 75 worker threads and 3 listener threads holding the parked connections in
    state K: the grid showed 'KKK' beside '... 4 busy'."""
    snaps = tui_scenarios.event_keepalive_idle()

    def check(app: ServerscopeApp, lab: LabScreen) -> None:
        grid = app.query_one(ScoreboardGrid)
        drawn = "".join(grid.render_line(y).text for y in range(grid.size.height)).strip()
        assert len(drawn) == 75 and "K" not in drawn, drawn
        title = str(app.query_one("#scoreboard-panel").border_title)
        assert "75 threads in 3 processes" in title and "+3 listeners" in title, title

    on_screen(snaps, check)


def test_one_worker_is_one_worker_and_the_title_is_cut_by_whole_parts() -> None:
    snap = synthetic.snapshot(workers=1, model="attached")
    assert summary(Frame(snap), 200).startswith("scoreboard · 1 worker ·")
    # a narrow panel (80 columns): parts are left out whole, the master's CPU kept longest
    cluster = synthetic.snapshot(workers=256, master_cpu=97.0, states=["keepalive"])
    for width in range(20, 90):
        title = summary(Frame(cluster), width)
        assert len(title) <= width - 6 or title == "256 workers · 256 busy", (width, title)
        assert title.endswith(("busy", "idle", "CPU")), title
    assert summary(Frame(cluster), 48) == "256 workers · 256 busy · master 97% CPU"


def test_a_master_row_selected_in_the_table_leaves_no_cursor_on_a_worker_cell() -> None:
    snap = tui_scenarios.original_apache_worker()
    master = next(w for w in snap.workers if w.role == Role.MASTER)

    def check(app: ServerscopeApp, lab: LabScreen) -> None:
        lab.selected = master.key
        lab.redraw()
        assert app.query_one(ScoreboardGrid).cursor == -1

    on_screen([snap], check)


async def settle(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for the screen to show `cond` (a busy machine takes its time to re-render)."""
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


# -- finding 14: the phases panel opens on a worker that serves ------------------------------


def test_the_phases_panel_opens_on_the_busiest_worker_and_keeps_the_users_choice() -> None:
    """Worker 0 idle, worker 2 serving everything: the panel opened on w0 and read "none"
    in each of its cells."""
    snaps = synthetic.series(
        12,
        workers=4,
        states=["waiting", "waiting", "working", "waiting"],
        requests=[0, 0, 40, 0],
        connections=[0, 0, 3, 0],
        queue_ms=0.05,
        server_ms=0.02,
        service_ms=1.5,
        phase_requests=[0, 0, 40, 0],
    )

    async def check(app: ServerscopeApp, lab: LabScreen) -> None:
        text = widget_text(app, app.query_one(PhasesPanel))
        assert "w2 p50/p99" in text, text
        service = next(line for line in text.splitlines() if "service" in line)
        assert "none" not in service, text
        # the user's choice is kept, idle or not
        lab.query_one(WorkerTable).focus()
        lab.query_one(WorkerTable).action_move(1)
        await settle(lambda: lab.selected is not None and lab.selected[0] == 3, "w3 chosen")
        await settle(
            lambda: "w3 p50/p99" in widget_text(app, app.query_one(PhasesPanel)), "w3's phases"
        )

    on_screen(snaps, check)


def test_the_load_dialog_describes_the_rate_its_field_holds() -> None:
    """`l` on steady at 50 req/s: the dialog said "open loop 200 req/s" (the preset's
    help) above a rate field holding 50."""
    from textual.widgets import Input, Static

    from loadgen.levels import PRESETS
    from tui.screens.load import LoadScreen

    async def check(app: ServerscopeApp, lab: LabScreen) -> None:
        dialog = LoadScreen(PRESETS["steady"].with_(rate=50.0), 300.0)
        await app.push_screen(dialog)
        help_of = lambda: str(dialog.query_one("#load-help", Static).render())  # noqa: E731
        await settle(lambda: "open loop at 50 req/s" in help_of(), "the help for 50 req/s")
        help_text = help_of()
        assert dialog.query_one("#rate", Input).value == "50"
        assert "open loop at 50 req/s" in help_text and "200" not in help_text, help_text
        dialog.query_one("#rate", Input).value = "80"
        await settle(lambda: "open loop at 80 req/s" in help_of(), "the help for 80 req/s")
        dialog.query_one("#rate", Input).value = "200"  # the preset's own: its own words
        await settle(lambda: "fair baseline" in help_of(), "the preset's own words")

    on_screen(tui_scenarios.many_accepts_burst()[-1:], check)


# -- finding 10: after a stop nothing claims to be live --------------------------------------


def test_after_s_stops_the_lab_no_panel_claims_a_live_server() -> None:
    """4 s after `s` the clients panel still said "50 req/s  40 clients, running" and the
    table "K keep, 10 conns"."""
    from lab.session import Session
    from loadgen.levels import PRESETS
    from servers.config import ServerConfig
    from tui.client_panel import ClientPanel
    from tui.screens.live import LiveScreen
    from tui.source import LiveSource

    level = PRESETS["steady"].with_(clients=4, rate=50.0, ramp=0, duration=30)
    source = LiveSource(Session(ServerConfig(model="many_accepts", workers=2), level))
    lab = LiveScreen(source, load_duration=30)

    async def check(app: ServerscopeApp, _: LabScreen) -> None:
        async def until(cond: Callable[[], bool], what: str) -> None:
            for _ in range(300):
                if cond():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"timed out waiting for {what}")

        running = lambda: "running" in widget_text(app, app.query_one(ClientPanel))  # noqa: E731
        await until(running, "the load running on screen")
        assert app.query_one(WorkerTable).rows
        lab.action_start_stop()
        await until(lambda: source.session.server is None, "the server to stop")
        await until(lambda: not running(), "the client panel to stop claiming a live load")
        await asyncio.sleep(0.6)  # two more periods: nothing live comes back
        text = "\n".join(screen_text(app))
        assert "running" not in text.replace("no server running", ""), text
        assert "req/s" not in widget_text(app, app.query_one(ClientPanel)), text
        assert not app.query_one(WorkerTable).rows, text
        grid = app.query_one(ScoreboardGrid)
        assert not grid.render_line(0).text.strip(), text
        assert "stopped" in str(app.query_one("#scoreboard-panel").border_title)
        assert "stopped" in app.sub_title
        await app.action_quit()

    try:
        on_screen([], check, screen=lab)
    finally:
        source.close()


# -- finding 12: text is never cut mid-word --------------------------------------------------


def test_an_attached_servers_long_figures_are_whole_at_every_size() -> None:
    """Cut at every size: 'pid…' for the top worker, 'eBPF tracepoints (firs…', 'ttfb…',
    ':18200pid 28201+7', event lines mid-word."""
    snaps = tui_scenarios.attached_with_long_figures()
    panels = ("banner", "scoreboard-panel", "imbalance", "backlog", "phases", "client", "events")

    for size in ((120, 36), (80, 24), (200, 50)):

        def check(app: ServerscopeApp, lab: LabScreen, size: tuple[int, int] = size) -> None:
            text = {p: widget_text(app, app.query_one(f"#{p}")) for p in panels}
            for p, t in text.items():
                assert "…" not in t, (size, p, t)
            assert ":18200 pid 28201" in text["backlog"], (size, text["backlog"])
            assert "pid 28201" in text["imbalance"], (size, text["imbalance"])
            if size[0] >= 120:  # (at 80x24 the client's phases give way to the evidence)
                assert re.search(r"ttfb 35\d ms", text["client"]), (size, text["client"])
                assert "queue: eBPF tracepoints" in text["phases"], (size, text["phases"])
            # the event log's lines: every word of the diagnosis, none cut
            words = " ".join(re.sub("[│\u2580-\u259f]", " ", text["events"]).split())
            assert "accept skew: pid 28201 took" in words, (size, text["events"])

        on_screen(snaps, check, size=size)
