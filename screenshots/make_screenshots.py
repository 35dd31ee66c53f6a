#!/usr/bin/env python3
"""Make every screenshot in the README and docs/ from the commands a user runs.

    .venv/bin/python screenshots/make_screenshots.py            # all of them, 120x36
    .venv/bin/python screenshots/make_screenshots.py --only reuseport_paused_worker
    .venv/bin/python screenshots/make_screenshots.py --list     # each shot's command

Each shot is a command line as the page prints it beside the image (`Shot.argv`, what
follows `serverscope`), read by serverscope's own parser: the live lab
(`serverscope --model M --load PRESET ...`), a guided demo (`serverscope demo NAME`, the
TUI `demo` opens), `compare` (which draws its own SVG), or an attach to a real server
(`serverscope serve ORIGINAL ...`, `serverscope load URL --preset ...` and
`serverscope attach --pid ...`, the three commands a user types in three terminals). Only
presets `load --list-presets` offers, the options every command takes and the keys a
user presses (`Shot.keys`) go in, so anyone can make the same screen.

A TUI shot waits until the phenomenon it shows is on screen (its diagnosis; for a demo,
the step's diagnoses and the figures its narration promises) AND the clients' figures are
live, at least MIN_SETTLE_S after the first frame, then saves an SVG with
`App.save_screenshot` and quits, which stops the server and the load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from commands import load as load_cmd  # noqa: E402
from commands import main as cli  # noqa: E402
from commands import tui as tui_cmd  # noqa: E402
from commands.common import config_from_args  # noqa: E402
from lab import catalogue  # noqa: E402
from lab.player import DemoPlayer  # noqa: E402
from lab.scenarios import Scenario  # noqa: E402
from lab.session import Session  # noqa: E402
from loadgen.levels import LoadLevel  # noqa: E402
from servers.config import ServerConfig  # noqa: E402
from tui.app import ServerscopeApp  # noqa: E402
from tui.screens.demo import DemoScreen  # noqa: E402
from tui.screens.live import LiveScreen  # noqa: E402
from tui.source import LiveSource  # noqa: E402

MIN_SETTLE_S = 3.0  # no shot before this: the panels' rates need a few samples
SIZE = (120, 36)


@dataclass(frozen=True)
class Shot:
    name: str  # screenshots/NAME.svg
    cmd: str  # the command after `serverscope`, as the page prints it
    expect: str = ""  # diagnosis rule to wait for ("": just wait `settle`)
    seconds: float = 15.0  # the longest to wait for it
    settle: float = 0.0  # at least this long before the shot
    keys: str = ""  # what the user presses first, as the page says (see `press`)
    ready: Callable[[LiveScreen], bool] | None = None  # and this holds (if given)
    # attach shots: the server and the load, each a command in its own terminal
    serve: str = ""
    load: str = ""
    # fleet shots: the agents Prometheus scrapes (each a command in its own terminal)
    agents: tuple[str, ...] = ()

    @property
    def argv(self) -> tuple[str, ...]:
        return tuple(shlex.split(self.cmd))

    @property
    def command(self) -> str:
        return f"serverscope {self.cmd}"

    @property
    def kind(self) -> str:
        kinds = ("demo", "compare", "attach", "fleet")
        return self.argv[0] if self.argv[0] in kinds else "live"


def queue_wait_seen(screen: LiveScreen) -> bool:
    """The window holds connections accepted after waiting in the queue (queue wait is
    timed at accept(), so a pool pinned the whole window has none to show)."""
    ph = screen.last.window_phases if screen.last else None
    return ph is not None and ph.queue is not None and ph.queue.count > 0


def stack_shown(screen: LiveScreen) -> bool:
    """The worker detail is open on a worker with a stack taken by itself."""
    taken = screen.stacks.get(screen.selected) if screen.selected is not None else None
    return screen.detail is not None and taken is not None and taken.capture is not None


SHOTS = [
    Shot(
        "many_accepts_burst",
        "--model many_accepts --workers 4 --load burst",
        expect="accept_skew",  # shows as the 20 clients connect at once: shoot it then
        seconds=10,
    ),
    Shot(
        "compare",
        "compare --models many_accepts,cluster,reuseport --load burst --duration 4 --workers 4",
    ),
    Shot(
        "prefork_keepalive_idle",
        # MaxRequestWorkers 32 (not 256): the same starvation, without 256 processes
        "--model prefork --max-workers 32 --load keepalive-idle",
        expect="starvation",
        seconds=40,
        settle=6.0,
    ),
    Shot(
        "event_keepalive_idle",
        "--model event --workers 5 --load keepalive-idle",
        seconds=8,
        settle=8.0,
    ),
    Shot("single_storm_overflow", "demo overflow", expect="accept_queue_overflow"),
    Shot(
        "reuseport_paused_worker",
        "--model reuseport --workers 4 --load storm --clients 40",
        expect="reuseport_backlog",
        seconds=10,
        keys="down p",  # select worker 1 in the table, pause it
    ),
    Shot("goroutines_gil", "demo gil", expect="gil_cap", seconds=20),
    Shot(
        "prefork_phases",
        # KeepAliveTimeout 1.5 s, shorter than the clients' 2 s idle: children close idle
        # connections and take the next queued one, so the window holds connections
        # accepted after waiting (the panel and the message have queue waits to show)
        "--model prefork --max-workers 32 --keepalive-timeout 1.5 --load keepalive-idle",
        expect="starvation",
        seconds=45,
        settle=20.0,
        ready=queue_wait_seen,
    ),
    Shot(
        "attach_apache_prefork",
        "attach --pid PID",  # PID: the server's root pid, printed by `serve`
        expect="starvation",
        seconds=40,
        settle=4.0,
        serve="serve apache:prefork --max-workers 8 --port 8080",
        load="load http://127.0.0.1:8080/ --preset keepalive-idle --clients 40 --ramp 1 "
        "--duration 60",
    ),
    Shot(
        "stuck_worker_stack",
        # each request waits 5 s for I/O: every worker is stuck, its stack taken by itself
        "--model proc_spawn --workers 4 --load slow-io --clients 4 --io-ms 5000",
        expect="stuck",
        seconds=30,
        settle=6.0,
        keys="enter",  # the selected worker in detail: its request, client and stack
        ready=stack_shown,
    ),
    Shot(
        "fleet",
        "fleet --prometheus http://127.0.0.1:9090",
        seconds=120,
        # three lab runs, each exporting its snapshots; Prometheus scrapes the three ports
        agents=(
            "run --model many_accepts --exclusive --workers 4 --load burst --duration 300 "
            "--export 127.0.0.1:9464",
            "run --model prefork --max-workers 8 --load keepalive-idle --duration 300 "
            "--export 127.0.0.1:9465",
            "run --model reuseport --workers 4 --load steady --duration 300 "
            "--export 127.0.0.1:9466",
        ),
    ),
]


# -- reading the commands with serverscope's own parser ------------------------------------


def parse(cmd: str | tuple[str, ...]) -> argparse.Namespace:
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    return cli.build_parser().parse_args(argv)


def live_args(shot: Shot) -> tuple[ServerConfig, LoadLevel | None, float | None]:
    """What `serverscope ARGV` opens: its model config, its load, the load's duration."""
    a = parse(shot.cmd)
    cfg = tui_cmd.check_config(tui_cmd.default_config(a))
    return cfg, tui_cmd.level_from_args(a), a.duration


def demo_scenario(shot: Shot) -> Scenario:
    return catalogue.get(parse(shot.cmd).name)


def attach_parts(shot: Shot) -> tuple[ServerConfig, LoadLevel]:
    """The server `serverscope serve ...` starts and the load `serverscope load ...` runs."""
    s = parse(shot.serve)
    cfg = config_from_args(s.model, s)
    level = load_cmd.level_from_args(parse(shot.load))
    return cfg, level


# -- taking them ------------------------------------------------------------------------------


def clients_live(screen: LiveScreen) -> bool:
    """The clients panel shows live figures: requests completed, so a latency (a rate of
    0 req/s can be the truth, e.g. every client stuck behind a paused worker)."""
    c = screen.last.client if screen.last else None
    return c is not None and c.requests > 0 and c.latency_ms.count > 0


async def press(pilot, screen: LiveScreen, keys: str) -> None:  # type: ignore[no-untyped-def]
    """The user's keys, once the workers are on screen (`down` selects the next one)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (screen.last and len(screen.last.live_workers) > 1):
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    for key in keys.split():
        await pilot.press(key)
        await asyncio.sleep(0.2)


def demo_shown(screen: DemoScreen) -> bool:
    """The demo step's diagnoses and every figure its narration promises are on screen."""
    snap, step = screen.last, screen.player.step
    if snap is None:
        return False
    rules = {d.rule for d in snap.diagnoses}
    return set(step.expect) <= rules and all(e.holds(snap) for e in step.shows)


async def shoot(app: ServerscopeApp, screen: LiveScreen, shot: Shot, out: Path) -> str:
    async with app.run_test(size=SIZE) as pilot:
        began = time.monotonic()
        while screen.last is None:
            if getattr(screen, "startup_error", None):
                return f"failed to start: {screen.startup_error}"  # type: ignore[attr-defined]
            await pilot.pause(0.1)
        if shot.keys:
            await press(pilot, screen, shot.keys)
        start = time.monotonic()
        while True:
            await pilot.pause(0.25)
            waited = time.monotonic() - start
            if isinstance(screen, DemoScreen):
                shown = demo_shown(screen)
            else:
                rules = {d.rule for d in screen.last.diagnoses} if screen.last else set()
                shown = not shot.expect or shot.expect in rules
            settled = waited >= max(shot.settle, MIN_SETTLE_S) and clients_live(screen)
            ready = shot.ready is None or shot.ready(screen)
            if settled and ready and shown:
                note = f"{shot.expect or 'shown'} after {time.monotonic() - began:.1f} s"
                screen.frozen = True  # hold this frame (as the space key does) for the shot
                break
            if waited >= shot.seconds:
                note = f"{shot.expect} not seen within {shot.seconds:g} s; saved anyway"
                break
        await pilot.pause(0.3)
        path = app.save_screenshot(filename=f"{shot.name}.svg", path=str(out))
        await pilot.press("q")
        closing = getattr(screen, "source", None)
        while closing is not None and not getattr(closing, "closed", True):
            await pilot.pause(0.1)
    return f"{path}: {note}"


async def take_live(shot: Shot, out: Path) -> str:
    cfg, level, duration = live_args(shot)
    source = LiveSource(Session(cfg, level))
    screen = LiveScreen(source, load_duration=duration or tui_cmd.LIVE_DURATION)
    return await shoot(ServerscopeApp(screen), screen, shot, out)


async def take_demo(shot: Shot, out: Path) -> str:
    scenario = demo_scenario(shot)  # as tui.app.run_demo opens it
    player = DemoPlayer(scenario)
    source = LiveSource(Session(player.step.config, player.level(player.step)))
    screen = DemoScreen(source, scenario)
    return await shoot(ServerscopeApp(screen), screen, shot, out)


async def take_attach(shot: Shot, out: Path) -> str:
    """`serve` (a real Apache), `load` at it, `attach --pid` on its root pid."""
    from lab.attach import Attachment
    from loadgen.runner import LoadRunner
    from originals.launch import Original
    from tui.screens.attach import AttachScreen
    from tui.source import LiveSource

    cfg, level = attach_parts(shot)
    server = Original(cfg.with_(port=0)).start()  # a free port: 8080 may be taken here
    runner = attachment = None
    try:
        runner = LoadRunner(server.url + "/", level).start()
        a = parse(tuple(str(server.root_pid) if x == "PID" else x for x in shot.argv))
        attachment = Attachment.open(pid=a.pid, status_url=a.status_url, exact_accepts=False)
        attachment.sampler.load = runner.stats  # the shot's own load, with its request costs
        screen = AttachScreen(LiveSource(attachment))
        return await shoot(ServerscopeApp(screen), screen, shot, out)  # type: ignore[arg-type]
    finally:
        if attachment is not None:
            attachment.close()
        if runner is not None:
            runner.stop()
        server.stop()


def take_compare(shot: Shot, out: Path) -> str:
    """`serverscope compare ...` draws its own chart: point its --svg at the shot's file."""
    path = out / f"{shot.name}.svg"
    code = cli.main([*shot.argv, "--svg", str(path)])
    return f"{path}: compare exited {code}"


def take_fleet(shot: Shot, out: Path) -> str:
    """The agents (`serverscope run ... --export`, each on a free port in place of the
    page's), a real Prometheus scraping them every second (docs/prometheus/prometheus.yml,
    its targets the agents'), then the fleet screen once every agent's diagnosis is in it."""
    import re
    import socket
    import subprocess
    import tempfile

    from lab.fleet_source import FleetReader
    from readers.promapi import PromClient
    from tui.fleet_app import FleetApp

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="serverscope-fleet-shot-"))
    try:
        targets = []
        for line in shot.agents:
            port = free()
            argv = re.sub(r"--export 127\.0\.0\.1:\d+", f"--export 127.0.0.1:{port}", line)
            cmd = [sys.executable, "-m", "commands", *shlex.split(argv)]
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env))
            targets.append(f"127.0.0.1:{port}")
        config = (ROOT / "docs" / "prometheus" / "prometheus.yml").read_text()
        config = config.replace("15s", "1s").replace("- fleet-rules.yml", "")
        config = re.sub(r"- 127\.0\.0\.1:9464.*", "- " + "\n          - ".join(targets), config)
        (tmp / "prometheus.yml").write_text(config)
        prom_port = free()
        procs.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        base = f"http://127.0.0.1:{prom_port}"
        reader = FleetReader(PromClient(base), job="serverscope", minutes=10)
        wanted = {"accept_skew", "starvation"}
        end = time.monotonic() + shot.seconds
        seen: set[str] = set()
        while time.monotonic() < end:
            try:
                fleet = reader.read()
                rows = fleet.servers
                seen = {d.rule for s in rows for d in s.diagnoses}
                if len(rows) == len(shot.agents) and wanted <= seen:
                    break
            except OSError:
                pass
            time.sleep(1.0)
        else:
            raise SystemExit(f"fleet: {sorted(seen)} seen, not {sorted(wanted)}")

        async def snap() -> str:
            app = FleetApp(reader, period=2.0)
            async with app.run_test(size=SIZE) as pilot:
                await pilot.pause(3.0)
                path = out / f"{shot.name}.svg"
                app.save_screenshot(filename=path.name, path=str(out))
            return f"{path}: {len(shot.agents)} agents, {sorted(seen)}"

        return asyncio.run(snap())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def take(shot: Shot, out: Path) -> str:
    if shot.kind == "compare":
        return take_compare(shot, out)
    if shot.kind == "fleet":
        return take_fleet(shot, out)
    run = {"demo": take_demo, "attach": take_attach, "live": take_live}[shot.kind]
    return asyncio.run(run(shot, out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "screenshots"), help="directory for the SVGs")
    p.add_argument("--only", action="append", choices=[s.name for s in SHOTS])
    p.add_argument("--list", action="store_true", help="print each shot's command and exit")
    a = p.parse_args()
    if a.list:
        for shot in SHOTS:
            before = [f"serverscope {c}" for c in (shot.serve, shot.load, *shot.agents) if c]
            keys = f"  (then: {shot.keys})" if shot.keys else ""
            print(f"{shot.name}: {'; '.join([*before, shot.command])}{keys}")
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for shot in SHOTS:
        if a.only and shot.name not in a.only:
            continue
        print(take(shot, out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
