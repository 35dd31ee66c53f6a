"""Guided demos: scenarios that start the right model, load and fault, and say what to watch.

Each scenario is a list of steps; the TUI plays them (`serverscope demo NAME`), the tests
run each headless (`play`) and check that the expected diagnosis appears.

Knobs and loads are chosen so that each phenomenon shows within a few seconds on a
2-core machine that also runs the load generator; where that meant departing from the
textbook setting (a small backlog, a light load for skew, a simulated master
bottleneck), the narration says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from loadgen.levels import PRESETS, LoadLevel
from servers.config import ServerConfig
from telemetry.snapshot import Snapshot

from lab.session import Session

MASTER = -1  # Fault.slot for the model's root process (the master), not a worker slot


@dataclass(frozen=True)
class Fault:
    """Something done to one worker during a step."""

    action: str  # "pause" (SIGSTOP), "kill" (SIGKILL) or "burn" (burn CPU a few seconds)
    slot: int = 0  # scoreboard slot of the worker it is done to; MASTER (-1): the root
    after_s: float = 2.0  # seconds into the step
    every_s: float | None = None  # "burn" only: do it again every this many seconds

    def describe(self) -> str:
        who = "the master" if self.slot == MASTER else f"worker {self.slot}"
        what = {"pause": "pause (SIGSTOP)", "kill": "kill (SIGKILL)", "burn": "burn CPU in"}
        again = f", again every {self.every_s:g} s" if self.every_s else ""
        return f"{what.get(self.action, self.action)} {who} after {self.after_s:g} s{again}"

    def next_after(self, t: float) -> float:
        """When, in seconds into the step, to do it again after doing it at `t` (inf: never)."""
        return t + self.every_s if self.action == "burn" and self.every_s else math.inf


@dataclass(frozen=True)
class Step:
    title: str
    config: ServerConfig
    level: LoadLevel
    narration: tuple[str, ...]  # what the audience should look at, in order
    fault: Fault | None = None
    expect: tuple[str, ...] = ()  # diagnosis rule ids that this step should bring up
    seconds: float = 20.0  # how long the step runs before the demo moves on
    absent: tuple[str, ...] = ()  # rule ids this step (the contrast) should NOT bring up
    min_seconds: float = 0.0  # shortest step that shows `expect` (`--seconds` below it is
    # refused: `demo master --seconds 4` and `demo gil --seconds 4` reported "not shown")


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # one line for `demo --list`
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.config.model for s in self.steps))


# -- the loads ------------------------------------------------------------------------------

# Skew needs workers that are IDLE in accept when a connection arrives: under a saturating
# load (the `burst` preset: 20 clients back to back) every worker is busy and each takes
# its turn, so accepts come out even on 2 cores. A light load of new connections leaves
# them waiting, and EPOLLEXCLUSIVE's LIFO wake-up hands nearly every one to one worker.
LIGHT_CLOSE = LoadLevel(
    name="light-close", clients=10, rate=300, keepalive=False, duration=30, connect_timeout=10
)
STORM = PRESETS["storm"]
# keep-alive clients that idle 2 s between requests (KeepAliveTimeout is 5 s)
KEEPALIVE_IDLE = PRESETS["keepalive-idle"].with_(clients=100, ramp=2)
# open loop: new connections keep arriving whatever happens to the ones in a stalled queue
STALL = LoadLevel(name="steady-close", clients=300, rate=200, keepalive=False, duration=30)
CPU_HEAVY = LoadLevel(name="cpu-heavy", clients=20, cpu_ms=5, duration=30)


# -- the scenarios --------------------------------------------------------------------------

SCENARIOS: dict[str, Scenario] = {}


def _add(s: Scenario) -> None:
    SCENARIOS[s.name] = s


_add(
    Scenario(
        "skew",
        "accept skew: many_accepts lets the kernel pick a worker; cluster deals round robin",
        (
            Step(
                "many_accepts: every worker accepts on one shared socket",
                ServerConfig(model="many_accepts", workers=4, exclusive=True),
                LIGHT_CLOSE,
                (
                    "Four asyncio workers all wait on the same listening socket, woken with "
                    "EPOLLEXCLUSIVE as nginx does; the kernel decides who gets a connection.",
                    "The load is light on purpose: 300 new connections a second, so workers "
                    "wait in accept (a saturating load gives every worker its turn).",
                    "Watch the accepts column: one worker takes nearly all of them; the "
                    "others sit idle at '_'.",
                    "The imbalance line: Jain's index near 0.25 (= 1/n, one worker does "
                    "everything), top share near 100%.",
                ),
                expect=("accept_skew",),
                seconds=15,
                min_seconds=5,
            ),
            Step(
                "cluster: the master accepts and deals connections round robin",
                ServerConfig(model="cluster", workers=4),
                LIGHT_CLOSE,
                (
                    "Same load, same four workers; now only the master accepts, and it "
                    "hands each connection to the next worker in turn (Node's default).",
                    "Watch the accepts column even out: Jain's index goes to 1.00, top share "
                    "to 25%.",
                    "The price: every connection passes through the master (see `demo master`).",
                ),
                expect=(),
                absent=("accept_skew",),
                seconds=15,
            ),
        ),
    )
)

_add(
    Scenario(
        "starvation",
        "prefork starvation: idle keep-alive clients pin every child; event is not pinned",
        (
            Step(
                "prefork: one connection per child, keep-alive wait included",
                ServerConfig(model="prefork", start_servers=10, max_spare=20, max_workers=20),
                KEEPALIVE_IDLE,
                (
                    "100 keep-alive clients each send one request every 2 s and idle in "
                    "between; KeepAliveTimeout is 5 s, so their connections stay open.",
                    "MaxRequestWorkers is 20 here (256 in Apache) so that the pool fills "
                    "in a few seconds: watch the master spawn 1, 2, 4 ... children a second.",
                    "Every child goes to K (keep-alive wait) and stays there: the CPU is "
                    "idle, yet the accept queue grows.",
                    "New clients wait in the queue for a child to be freed: connect times "
                    "and latency climb while the server does nothing.",
                ),
                expect=("starvation",),
                seconds=20,
                min_seconds=12,
            ),
            Step(
                "event: keep-alive waits parked in the listener's event loop",
                ServerConfig(model="event"),
                KEEPALIVE_IDLE,
                (
                    "Same load on Apache's event MPM: a connection waiting for its next "
                    "request is parked in the listener thread, not in a worker thread.",
                    "Watch the worker threads: mostly '_' (idle), not K; the accept queue "
                    "stays empty.",
                    "Same clients, no starvation.",
                ),
                expect=(),
                absent=("starvation",),
                seconds=15,
            ),
        ),
    )
)

_add(
    Scenario(
        "overflow",
        "accept queue overflow: single under a storm, connect times at whole seconds",
        (
            Step(
                "single: one process, one connection at a time, a 16-slot accept queue",
                ServerConfig(model="single", backlog=16),
                # 20 ms of CPU a request: single serves ~50 a second while 100 clients
                # reconnect, so the queue stays full and most handshakes are dropped (with
                # GET / it served 15,000/s, the queue emptied at once: 0.4% of connects
                # were dropped and connect p99 read 1.4 ms). Measured here, 8 s: 700
                # ListenOverflows, connect p90 1.0 s, p99 2.0-3.1 s.
                STORM.with_(name="storm-cpu", cpu_ms=20),
                (
                    "One process serves one connection at a time; 100 clients open a new "
                    "connection for every request, and each request costs 20 ms of CPU, "
                    "so it serves about 50 a second.",
                    "The backlog is 16 here (511 by default) so that the queue fills at "
                    "once: watch it sit at 16/16, in red.",
                    "Once it is full the kernel drops handshakes: ListenOverflows (a "
                    "namespace-wide counter) climbs.",
                    "Dropped clients retransmit their SYN: watch the 'connects' line count "
                    "connects at 1 s, 2 s, 3 s (Linux 6.7+ retries every second five times; "
                    "older kernels at 1 s, 3 s, 7 s) and connect p99 jump past 1 s.",
                    "A client still retrying its handshake, or whose request is not "
                    "answered yet, is waiting: watch 'waiting' and its oldest age grow.",
                ),
                expect=("accept_queue_overflow",),
                seconds=20,
            ),
        ),
    )
)

_add(
    Scenario(
        "hol",
        "a stalled worker: its own reuseport queue backs up; a shared queue routes around it",
        (
            Step(
                "reuseport: one SO_REUSEPORT socket and accept queue per worker",
                ServerConfig(model="reuseport", workers=4),
                STALL,
                (
                    "200 new connections a second (open loop), spread over four workers' "
                    "own queues by a hash of the client's address and port.",
                    "After a few seconds worker 0 is paused (SIGSTOP), as a stuck worker would be.",
                    "Watch worker 0's queue: the kernel keeps hashing a quarter of new "
                    "connections to it, and nobody takes them.",
                    "The other queues stay empty; the stuck clients wait until worker 0 "
                    "comes back: p99 latency explodes.",
                ),
                fault=Fault("pause", slot=0, after_s=3.0),
                expect=("reuseport_backlog",),
                seconds=15,
                min_seconds=7,
            ),
            Step(
                "many_accepts: one shared queue",
                ServerConfig(model="many_accepts", workers=4),
                STALL,
                (
                    "Same load, same pause of worker 0, but all workers take from one "
                    "shared queue.",
                    "Watch the queue: the three running workers drain it; only the "
                    "connections worker 0 had already accepted are stuck.",
                ),
                fault=Fault("pause", slot=0, after_s=3.0),
                expect=(),
                absent=("reuseport_backlog",),
                seconds=15,
            ),
        ),
    )
)

_add(
    Scenario(
        "master",
        "cluster's master as the bottleneck: every connection passes through one process",
        (
            Step(
                "cluster under a storm of new connections",
                ServerConfig(model="cluster", workers=4),
                STORM,
                (
                    "Every connection is accepted by the master and passed to a worker "
                    "over a Unix socket: watch the master's CPU (in the scoreboard's title) "
                    "beside the workers' CPU column.",
                    "On this 2-core machine the load generator costs several times more "
                    "CPU per connection than the master, so real load cannot saturate it "
                    "here; on a many-core server with the clients elsewhere it does.",
                ),
                expect=(),
                absent=("accept_skew",),  # the master deals round robin
                seconds=8,
            ),
            Step(
                "cluster with a saturated master (simulated)",
                ServerConfig(model="cluster", workers=4),
                STORM,
                (
                    "Simulated: the master is made to burn CPU in its accept loop, again "
                    "and again, as a master with more connections than it can handle.",
                    "Watch the scoreboard's title: master ~100% CPU (one core) while the "
                    "workers idle at '_': nothing reaches them.",
                    "The accept queue fills, connect times and p99 latency climb: the "
                    "workers are free, the master is the bottleneck.",
                ),
                fault=Fault("burn", slot=MASTER, after_s=2.0, every_s=2.5),
                expect=("master_bottleneck",),
                absent=("accept_skew",),  # round robin: even, however slow the master
                seconds=15,
                min_seconds=10,  # the burn from 2 s, then a 5 s window of it, and margin
            ),
        ),
    )
)

_add(
    Scenario(
        "gil",
        "goroutines on CPython: event-loop threads share one core under the GIL",
        (
            Step(
                "goroutines under CPU-heavy requests",
                ServerConfig(model="goroutines", workers=2),
                CPU_HEAVY,
                (
                    "One process, one event-loop thread per core (2 here), a coroutine per "
                    "connection; requests burn 5 ms of CPU each.",
                    "Watch the process's CPU: it stays near 100% of ONE core, shared by "
                    "its threads, while the other core idles.",
                    "That is the GIL: only one thread runs Python at a time. Go's runtime "
                    "would use both cores.",
                ),
                expect=("gil_cap",),
                seconds=15,
                min_seconds=9,
            ),
        ),
    )
)


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown demo {name!r}; choose one of: {', '.join(SCENARIOS)}") from None


def with_seconds(scenario: Scenario, seconds: float) -> Scenario:
    """The scenario with every step `seconds` long (faults kept within the step)."""
    steps = []
    for st in scenario.steps:
        fault = st.fault
        if fault is not None and fault.after_s >= seconds * 0.5:
            fault = dataclasses.replace(fault, after_s=round(seconds * 0.3, 2))
        steps.append(dataclasses.replace(st, seconds=seconds, fault=fault))
    return dataclasses.replace(scenario, steps=tuple(steps))


def too_short(scenario: Scenario, seconds: float) -> str | None:
    """Why steps of `seconds` cannot show what `scenario` promises (None: they can)."""
    worst = max(scenario.steps, key=lambda st: st.min_seconds)
    if seconds >= worst.min_seconds:
        return None
    n = scenario.steps.index(worst) + 1
    shows = " and ".join(worst.expect) or "its phenomenon"
    return (
        f"--seconds {seconds:g} is too short for demo {scenario.name}: step {n} needs "
        f"at least {worst.min_seconds:g} s to show {shows}"
    )


# -- the headless player --------------------------------------------------------------------


@dataclass
class StepResult:
    step: Step
    index: int
    seconds: float = 0.0  # how long it ran
    samples: int = 0
    seen: dict[str, float] = field(default_factory=dict)  # rule -> first seen, s into step
    messages: dict[str, str] = field(default_factory=dict)  # rule -> first message
    fault_done: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(r for r in self.step.expect if r not in self.seen)

    @property
    def unwanted(self) -> tuple[str, ...]:
        return tuple(r for r in self.step.absent if r in self.seen)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing and not self.unwanted


SampleHook = Callable[[int, Snapshot, float], None]  # step index, snapshot, s into step
StepHook = Callable[[int, Step], None]


def play(
    scenario: Scenario,
    *,
    seconds: float | None = None,
    stop_when_seen: bool = False,
    period: float = 0.25,
    on_step: StepHook | None = None,
    on_sample: SampleHook | None = None,
    stop: threading.Event | None = None,
    session_factory: Callable[..., Session] = Session,
) -> list[StepResult]:
    """Play every step with no UI: start its model and load, do its fault, sample.

    `seconds` overrides each step's length (the tests use a few seconds); with
    `stop_when_seen` a step with expectations ends as soon as all have appeared."""
    if seconds is not None:
        scenario = with_seconds(scenario, seconds)
    stop = stop or threading.Event()
    results: list[StepResult] = []
    session: Session | None = None
    try:
        for i, step in enumerate(scenario.steps):
            if stop.is_set():
                break
            level = step.level.with_(duration=step.seconds + 5)  # outlasts the step
            res = StepResult(step, i)
            results.append(res)
            try:
                if session is None:
                    session = session_factory(step.config, level, period=period)
                    session.start()
                else:
                    session.restart(step.config, level)
            except Exception as e:  # a model or load that cannot start: report, go on
                res.error = f"{type(e).__name__}: {e}"
                if session is not None and session.supervisor is None:
                    session.close()
                    session = None
                continue
            if on_step is not None:
                on_step(i, step)
            _run_step(session, step, res, period, stop, stop_when_seen, on_sample)
    finally:
        if session is not None:
            session.close()
    return results


def _run_step(
    session: Session,
    step: Step,
    res: StepResult,
    period: float,
    stop: threading.Event,
    stop_when_seen: bool,
    on_sample: SampleHook | None,
) -> None:
    fault = step.fault
    next_fault = fault.after_s if fault is not None else math.inf
    t0 = time.monotonic()
    while not stop.wait(period):
        t = time.monotonic() - t0
        if fault is not None and t >= next_fault:
            res.fault_done.append(apply_fault(session, fault))
            next_fault = fault.next_after(t)
        snap = session.sample()
        if snap is None:
            res.error = "the server is not running"
            break
        res.samples += 1
        for d in snap.diagnoses:
            if d.rule not in res.seen:
                res.seen[d.rule] = round(t, 2)
                res.messages[d.rule] = d.message
        if on_sample is not None:
            on_sample(res.index, snap, t)
        sup = session.supervisor
        if sup is None or not sup.running:
            res.error = f"{step.config.model} exited during the step"
            break
        if stop_when_seen and step.expect and not res.missing:
            break
        if t >= step.seconds:
            break
    res.seconds = time.monotonic() - t0


def apply_fault(session: Session, fault: Fault) -> str:
    """Do `fault` to its worker (or the master) on a live session; one line saying what."""
    sup = session.supervisor
    if sup is None:
        return "no server to fault"
    if fault.slot == MASTER:
        pid = sup.root_pid
        who = f"master pid {pid}"
    else:
        slots = sup.read().slots
        if fault.slot >= len(slots) or slots[fault.slot].pid <= 0:
            return f"no worker in slot {fault.slot}"
        pid = slots[fault.slot].pid
        who = f"worker {fault.slot} (pid {pid})"
    try:
        if fault.action == "pause":
            if pid in session.paused_pids:
                return f"{who} already paused"
            session.pause_worker(pid)
        elif fault.action == "kill":
            session.kill_worker(pid)
        elif fault.action == "burn":
            session.burn_worker(pid)
        else:
            return f"unknown fault {fault.action!r}"
    except ValueError as e:
        return str(e)
    return f"{fault.action} {who}"


# -- the `demo` command ---------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="play a guided demo (see --list)",
        description="Play a guided demo: each step starts a model, a load and a fault, and "
        "says what to look at. Plays in the TUI (--headless: a live text view).",
    )
    p.add_argument("name", nargs="?", help="demo name (see --list)")
    p.add_argument("--list", action="store_true", help="list the demos and exit")
    p.add_argument(
        "--seconds", type=_seconds, help="length of every step, seconds (default: each step's)"
    )
    p.add_argument(
        "--headless", action="store_true", help="the live text view even if the TUI exists"
    )
    return p


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 1 and 3600, got {text!r}")
    return value


def list_lines() -> list[str]:
    width = max(map(len, SCENARIOS))
    return [f"{name:<{width}}  {s.summary}" for name, s in SCENARIOS.items()]


def command(a: argparse.Namespace) -> int:
    if a.list:
        print("\n".join(list_lines()))
        return 0
    if not a.name:
        print("serverscope demo: name a demo (serverscope demo --list shows them)", file=sys.stderr)
        return 2
    try:
        scenario = get(a.name)
    except KeyError as e:
        print(f"serverscope demo: {e.args[0]}", file=sys.stderr)
        return 2
    if a.seconds is not None:
        why = too_short(scenario, a.seconds)
        if why is not None:
            print(f"serverscope demo: {why}", file=sys.stderr)
            return 2
        scenario = with_seconds(scenario, a.seconds)
    if a.headless:
        return play_live(scenario)
    from tui.app import run_demo  # late: Textual loads only when a TUI opens

    code, error = run_demo(scenario)
    if error:
        print(f"serverscope demo: {error}", file=sys.stderr)
    return code


def play_live(scenario: Scenario, console: Console | None = None) -> int:
    """The headless player with a rich live view: narration, the snapshot, diagnoses."""
    from telemetry.render import render

    console = console or Console()
    stop = threading.Event()
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    n = len(scenario.steps)
    seen: dict[str, float] = {}
    try:
        with Live(console=console, auto_refresh=False, screen=False) as live:

            def on_step(i: int, step: Step) -> None:
                seen.clear()
                live.update(Text(f"step {i + 1}/{n}: starting {step.title} ..."), refresh=True)

            def on_sample(i: int, snap: Snapshot, t: float) -> None:
                step = scenario.steps[i]
                for d in snap.diagnoses:
                    seen.setdefault(d.rule, t)
                live.update(_live_view(scenario, i, step, snap, t, seen, render), refresh=True)

            results = play(scenario, on_step=on_step, on_sample=on_sample, stop=stop)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    console.print()
    console.print(Text(f"demo {scenario.name}", style="bold"))
    for r in results:
        mark = "[green]ok[/]" if r.ok else "[red]not shown[/]"
        seen_text = ", ".join(f"{k} at {v:g} s" for k, v in r.seen.items()) or "no diagnosis"
        console.print(f"  step {r.index + 1}: {r.step.title}: {seen_text}  {mark}")
        if r.error:
            console.print(f"    [red]{r.error}[/]")
    return 0 if results and all(r.error is None for r in results) else 1


def _live_view(
    scenario: Scenario,
    i: int,
    step: Step,
    snap: Snapshot,
    t: float,
    seen: dict[str, float],
    render: Callable[[Snapshot], Any],
) -> Group:
    head = Text()
    head.append(f"demo {scenario.name}", style="bold")
    head.append(f"  step {i + 1}/{len(scenario.steps)}: {step.title}")
    head.append(f"  {t:4.0f}/{step.seconds:g} s", style="dim")
    if step.fault is not None:
        head.append(f"\nfault: {step.fault.describe()}", style="magenta")
    narr = Text()
    # the narration's lines come up one after another over the step's first two thirds
    shown = 1 + int(t / max(1.0, step.seconds * 0.66 / max(1, len(step.narration))))
    for j, line in enumerate(step.narration):
        style = "bold" if j == min(shown, len(step.narration)) - 1 else "dim"
        if j < shown:
            narr.append(f"{j + 1}. {line}\n", style=style)
    c = snap.client
    client = Text()
    if c is not None:
        client.append(
            f"client: {c.rps:.0f} req/s  p99 {c.latency_ms.p99:.1f} ms  connect p99 "
            f"{c.connect_ms.p99:.1f} ms  errors {c.error_count}  open {c.open_connections}"
        )
    want = Text()
    for rule in step.expect:
        if rule in seen:
            want.append(f"expected {rule}: seen at {seen[rule]:.1f} s  ", style="green")
        else:
            want.append(f"expected {rule}: not yet  ", style="yellow")
    return Group(head, narr, client, render(snap), want)
