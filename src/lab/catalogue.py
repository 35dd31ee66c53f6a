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
from servers.knobs import KNOB

from .evidence import CONNECT_1S, OVERFLOWS, QUEUE_PAST_LIMIT, STALLED, WAITING_2S
from .scenarios import MASTER, Fault, Scenario, Step

# -- the loads ------------------------------------------------------------------------------

# Skew needs workers that are IDLE in accept when a connection arrives: under a saturating
# load (the `burst` preset: 20 clients back to back) every worker is busy and each takes
# its turn, so accepts come out even on 2 cores. A light load of new connections leaves
# them waiting, and EPOLLEXCLUSIVE's LIFO wake-up hands nearly every one to one worker.
# Loads that are no preset are named "custom", as `serverscope load` names its own, and
# the demo shows the `load` options that make them (Step.load_line).
LIGHT_CLOSE = LoadLevel(clients=10, rate=300, keepalive=False, duration=30)
STORM = PRESETS["storm"]
# keep-alive clients that idle 2 s between requests (KeepAliveTimeout is 5 s)
KEEPALIVE_IDLE = PRESETS["keepalive-idle"].with_(name="custom", clients=100, ramp=2)
# open loop: new connections keep arriving whatever happens to the ones in a stalled queue
STALL = LoadLevel(clients=300, rate=200, keepalive=False, duration=30)
CPU_HEAVY = LoadLevel(clients=20, cpu_ms=5, duration=30)
# Overflow needs arrivals that do not wait for the server: an open loop at twice what
# `single` serves (20 ms of CPU a request: at most 50 a second). A closed loop (the old
# `storm` with 20 ms requests) showed it half the time: the client just served reconnects
# the instant its slot frees and beats every retransmitted SYN to it, so the dropped
# clients never got in (4 runs: connect p99 4,088 ms, 7,127 ms, 0.8 ms, 0.2 ms). Paced
# arrivals leave the freed slot to whichever SYN comes first, retries included: measured
# here, connect p99 >= 1 s by 1.8 s in every run, connects at 1, 2, 3, 4, 5, 7 s. 400
# clients: room for the connections still retrying (up to the 10 s connect timeout).
# After ~10 s of overflow single stalls now and then (2 of 4 runs of 20 s, at 12-13 s):
# it accepted a connection whose request bytes the kernel had dropped with the queue
# full, and waits in read while the client resends them (ss: client Send-Q 123, rto
# 5.76 s, backoff 4): the narration says so.
OVERFLOW = LoadLevel(clients=400, rate=100, keepalive=False, cpu_ms=20, duration=30)
# clients that send their request a byte a second: three for each of prefork's 20 children
SLOWLORIS = PRESETS["slowloris"].with_(name="custom", clients=60, duration=30)


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
                    "The imbalance line: on a quiet machine Jain's index near 0.25 (= 1/n, "
                    "one worker does everything), top share near 100%. Other work on the "
                    "machine keeps the favourite busy more often, so the others get more "
                    "(seen at load average 7: Jain 0.67, top 51%), still well above 25%.",
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
                    "New clients' handshakes complete in the kernel, then wait in the "
                    "accept queue for a child to be freed: watch 'waiting' and its oldest "
                    "age climb, and latency p99 with it, while the server does nothing.",
                ),
                expect=("starvation",),
                shows=(WAITING_2S,),
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
            Step(
                "prefork under slow clients: the request-read timeout frees its children",
                ServerConfig(
                    model="prefork",
                    start_servers=10,
                    max_spare=20,
                    max_workers=20,
                    request_read_timeout="header=5-10,MinRate=500 body=5,MinRate=500",
                ),
                SLOWLORIS,
                (
                    "60 clients each send their request one byte a second (slowloris): "
                    "every child is pinned reading a request that never ends, R in the "
                    "scoreboard, while the CPU idles and the accept queue grows.",
                    "Apache's mod_reqtimeout gives a request's head 20 s by default (up to "
                    "40 s while bytes come fast enough); 5 s here "
                    "(--request-read-timeout header=5-10,MinRate=500) to show it sooner.",
                    "Every 5 s the slow clients are answered 408 and closed, and the "
                    "children take the connections queued behind them: watch the accepts "
                    "column climb; without the timeout each child is held for Timeout, 60 s.",
                    "The slow clients come back, so the pool stays starved: the timeout "
                    "bounds how long each one holds a child, it does not stop them.",
                ),
                expect=("starvation",),
                seconds=20,
                min_seconds=8,
            ),
        ),
    )
)

_add(
    Scenario(
        "overflow",
        "accept queue overflow: single under twice the load it serves, connects at whole seconds",
        (
            Step(
                "single: one process, one connection at a time, a 16-slot accept queue",
                ServerConfig(model="single", backlog=16),
                OVERFLOW,
                (
                    "One process serves one connection at a time, and each request costs "
                    "20 ms of CPU: single serves at most 50 a second.",
                    "100 new connections arrive every second (an open loop: they keep "
                    "coming whatever happens to the earlier ones), twice what it serves.",
                    f"The backlog is 16 here ({KNOB['backlog'].default} by default) so that "
                    "the queue fills at "
                    "once: watch it sit at 17/16, in red (Linux admits one connection past "
                    "the backlog before it counts the queue full).",
                    "Once it is full the kernel drops handshakes: ListenOverflows (a "
                    "namespace-wide counter) climbs.",
                    "Dropped clients retransmit their SYN: watch the 'connects' line count "
                    "connects at 1 s, 2 s, 3 s (Linux 6.7+ retries every second at first; "
                    "older kernels at 1 s, 3 s, 7 s) and connect p99 reach 1 s and more.",
                    "A client still retrying its handshake, or whose request is not "
                    "answered yet, is waiting: watch 'waiting' and its oldest age grow; "
                    "one that has retried for 10 s gives up (a connect_timeout error).",
                    "Single may also stall, CPU idle, at 0 req/s: a client whose request "
                    "bytes were dropped with the queue full gets in later without them, "
                    "and single waits until that client's kernel sends them again (its "
                    "retransmit timer backs off to seconds).",
                ),
                expect=("accept_queue_overflow",),
                shows=(QUEUE_PAST_LIMIT, OVERFLOWS, CONNECT_1S),
                seconds=20,
                min_seconds=5,
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
                    "comes back: watch 'waiting' and its oldest age climb, and latency p99 "
                    "with it.",
                ),
                fault=Fault("pause", slot=0, after_s=3.0),
                expect=("stalled_owner",),
                shows=(WAITING_2S,),
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
                    "Nothing is accepted while it burns: req/s falls to 0 and every "
                    "client's connection waits in the accept queue (the kernel completed "
                    "its handshake, so connect times stay short).",
                    "The requests wait unanswered: watch 'waiting' and its oldest age "
                    "climb by a second every second; the latency p99 shown counts them at "
                    "their age. The workers are free, the master is the bottleneck.",
                ),
                fault=Fault("burn", slot=MASTER, after_s=2.0, every_s=2.5),
                expect=("master_bottleneck",),
                shows=(STALLED,),
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


from .demo_remedies import REMEDY_DEMO  # noqa: E402  (a module of its own: this one is long)

_add(REMEDY_DEMO)
