"""Guided demos: scenarios that start the right model, load and fault, and say what to watch.

Each scenario is a list of steps; the TUI plays them (`serverscope demo NAME`), the tests
run each headless (`lab.player.play`) and check that the expected diagnosis appears.

Knobs and loads are chosen so that each phenomenon shows within a few seconds on a
2-core machine that also runs the load generator; where that meant departing from the
textbook setting (a small backlog, a light load for skew, a simulated master
bottleneck), the narration says so.
"""

from __future__ import annotations

from loadgen.levels import PRESETS, LoadLevel
from servers.config import ServerConfig

from .scenarios import MASTER, Fault, Scenario, Step

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
                # ListenOverflows, connect p90 1.0 s, p99 2.0-3.1 s. The clients arrive
                # over 2 s: all 100 at once beat the queue to it (it fills only as
                # handshakes complete), were answered with SYN cookies, and their ACKs were
                # the ones dropped: connected at once, then stuck (twice in five suite
                # runs: connect p99 4 ms, 83 requests waiting 7.8 s). Arriving over 2 s,
                # they meet a full queue and their SYNs are dropped: p99 4.1-7.1 s in 3 runs.
                STORM.with_(name="storm-cpu", cpu_ms=20, ramp=2),
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
                expect=("stalled_owner",),
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
                absent=("reuseport_backlog", "stalled_owner"),
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


def list_lines() -> list[str]:
    width = max(map(len, SCENARIOS))
    return [f"{name:<{width}}  {s.summary}" for name, s in SCENARIOS.items()]
