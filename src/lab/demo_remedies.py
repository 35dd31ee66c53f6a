"""The guided demo of a problem and its fixes, for talks: accept skew on a shared socket,
then puma's less-busy policy on the same socket, then a socket per worker (reuseport).

The load is the `burst` preset: 20 keep-alive clients connect at the same instant. With
plain epoll every worker is woken and the first to run takes every ready connection
(asyncio's accept loop, as libuv's): measured here, 20 of 20 to one worker in each of
three runs; with less-busy 10/6/4/0 and no skew diagnosed; reuseport 35% top share.
"""

from __future__ import annotations

from loadgen.levels import PRESETS
from servers.config import ServerConfig

from .scenarios import Scenario, Step

BURST = PRESETS["burst"]

REMEDY_DEMO = Scenario(
    "remedy",
    "skew, then its fixes: puma's less-busy on the same socket, then reuseport",
    (
        Step(
            "many_accepts: four workers race for one socket, each takes all it can",
            ServerConfig(model="many_accepts", workers=4),
            BURST,
            (
                "Four asyncio workers wait on one listening socket with plain epoll: every "
                "one is woken for a new connection, and they race.",
                "20 keep-alive clients connect at the same instant. The first worker to "
                "run accepts every connection ready (--accept-policy all: asyncio and "
                "libuv both loop on accept until the queue is empty).",
                "Watch the accepts and conns columns: the workers that ran first hold the "
                "connections and do all the work while the others idle at '_'; the "
                "diagnosis names the mechanism read and the fixes.",
            ),
            expect=("accept_skew",),
            seconds=15,
            min_seconds=5,
        ),
        Step(
            "less-busy: a serving worker waits before it accepts (puma)",
            ServerConfig(model="many_accepts", workers=4, accept_policy="less-busy"),
            BURST,
            (
                "The same socket and load; now each worker takes one connection per "
                "wake-up, and a worker that is serving waits up to 5 ms before it accepts "
                "(puma's wait_for_less_busy_worker), so an idle one gets there first.",
                "Watch the accepts spread over the workers: the skew diagnosis does not "
                "come. The kernel still picks; the workers step back.",
            ),
            absent=("accept_skew",),
            seconds=15,
        ),
        Step(
            "reuseport: a socket and a queue per worker, the kernel hashes",
            ServerConfig(model="reuseport", workers=4),
            BURST,
            (
                "One SO_REUSEPORT socket per worker: the kernel hashes each connection's "
                "addresses to one socket, so counts come out even without any worker's "
                "help.",
                "The price, for later: the hash is blind to load; a stalled worker keeps "
                "its share (`serverscope claims --only cloudflare-latency`).",
            ),
            absent=("accept_skew",),
            seconds=15,
        ),
    ),
)
