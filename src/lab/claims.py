"""The field's published claims about balancing, measured on the lab's models: each claim
runs the two setups it compares (a fresh server each, under the same bounded load) and
holds our figures against the published one, with a test that chance did not make the
difference (a bootstrap interval over requests or windows; for a share of accepts, a
test of the counts against an even spread, judging.evenness).

Figures name their source: accepts from each worker's own scoreboard slot (exact), latency
seen by the client threads here (a new connection per request), the master's CPU from
/proc/PID/schedstat. Each claim takes 4-10 s on 2 cores; `serverscope claims` bounds the
whole run by a time budget.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from judging import evenness
from servers.config import ConfigError, ServerConfig
from servers.supervisor import ServerError, Supervisor

from . import probes

SEED = 26  # the bootstrap's generator: the same samples give the same interval
DRAWS = 2000


@dataclass(frozen=True)
class Outcome:
    ours: str  # our figures, in a line
    confirmed: bool | None  # None: not measured
    why: str  # what decided it, in a line


@dataclass(frozen=True)
class Claim:
    key: str  # for --only
    source: str
    published: str
    setups: str  # what we run, in a line
    measure: Callable[[], Outcome]
    seconds: float  # about how long it takes here (for --list and the budget)


@dataclass
class ClaimRow:
    claim: Claim
    outcome: Outcome
    seconds: float


@dataclass
class ClaimsRun:
    rows: list[ClaimRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not started: the budget was spent
    seconds: float = 0.0


# -- servers and loads -------------------------------------------------------------------


class Started:
    """A model on a free loopback port for the length of a `with`."""

    def __init__(self, model: str, **knobs: object) -> None:
        self.sup = Supervisor(ServerConfig(model=model, keepalive_timeout=15.0, **knobs))  # type: ignore[arg-type]

    def __enter__(self) -> Supervisor:
        return self.sup.start()

    def __exit__(self, *exc: object) -> None:
        self.sup.stop()


def accepts(sup: Supervisor) -> list[int]:
    return [s.accepted for s in sup.read().live]


def counted(sup: Supervisor, action: Callable[[], object]) -> list[int]:
    """Each worker's accepts while `action` runs, busiest first (the scoreboard's)."""
    before = {s.pid: s.accepted for s in sup.read().live}
    action()
    after = {s.pid: s.accepted for s in sup.read().live}
    return sorted((n - before.get(pid, 0) for pid, n in after.items()), reverse=True)


def _asleep(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True  # gone: nothing to wait for
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] == b"S"


def sequential_asleep(sup: Supervisor, n: int) -> None:
    """`n` connections one at a time, each once every worker is asleep (at most 0.2 s), so
    that the kernel's order of waiters decides, not who is back first."""
    pids = [s.pid for s in sup.read().live]
    for _ in range(n):
        deadline = time.monotonic() + 0.2
        while not all(_asleep(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.0005)
        probes.sequential_workers(sup.port, 1)


ROUNDS = 4  # two setups compared in alternating rounds: the machine's drift hits both


@dataclass
class Side:
    """One setup of a comparison: its latencies, accepts and master CPU, over the rounds."""

    sup: Supervisor
    latencies: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    accepted: int = 0
    master_ns: int = 0


def alternating(
    setups: dict[str, tuple[str, dict[str, Any]]], load: dict[str, int], seconds: float
) -> dict[str, Side]:
    """Start every setup (name -> (model, knobs)), then load them in turn, ROUNDS times
    for seconds / ROUNDS each, so that a change in the machine's load falls on both."""
    started = {name: Started(model, **knobs) for name, (model, knobs) in setups.items()}
    sides: dict[str, Side] = {}
    try:
        for name, st in started.items():
            sides[name] = Side(st.__enter__(), {path: [] for path in load})
        for _ in range(ROUNDS):
            for side in sides.values():
                a0, c0 = side.sup.read().totals()["accepted"], probes.cpu_ns([side.sup.root_pid])
                t0 = time.monotonic()
                for path, got in closed_loop(side.sup.port, load, seconds / ROUNDS).items():
                    side.latencies[path] += got
                side.seconds += time.monotonic() - t0
                side.accepted += side.sup.read().totals()["accepted"] - a0
                side.master_ns += probes.cpu_ns([side.sup.root_pid]) - c0
    finally:
        for st in started.values():
            st.__exit__()
    return sides


def closed_loop(port: int, clients: dict[str, int], seconds: float) -> dict[str, list[float]]:
    """Clients by path, each a new connection per request, back to back for `seconds`:
    each path's latencies (s)."""
    until = time.monotonic() + seconds
    out: dict[str, list[float]] = {path: [] for path in clients}

    def one(path: str) -> None:
        mine = out[path]
        request = f"GET {path} HTTP/1.1\r\nHost: claims\r\nConnection: close\r\n\r\n".encode()
        while time.monotonic() < until:
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(request)
                    probes.read_head(s, bytearray())
            except OSError:
                continue
            mine.append(time.monotonic() - t0)

    threads = [
        threading.Thread(target=one, args=(path,), daemon=True)
        for path, n in clients.items()
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 15)
    return out


Stat = Callable[[Any], Any]  # numpy rows -> one figure per row


def interval(a: Sequence[float], b: Sequence[float], stat: Stat) -> tuple[float, float, float]:
    """stat(b) / stat(a) and its 95% bootstrap interval (requests drawn with replacement)."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    xa, xb = np.asarray(a), np.asarray(b)
    ia = rng.integers(0, len(xa), (DRAWS, len(xa)))
    ib = rng.integers(0, len(xb), (DRAWS, len(xb)))
    ratios = stat(xb[ib]) / np.maximum(stat(xa[ia]), 1e-9)
    point = float(stat(xb[None, :])[0]) / max(float(stat(xa[None, :])[0]), 1e-9)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return point, float(low), float(high)


def _sd(x: Any) -> Any:
    import numpy as np

    return np.std(x, axis=-1)


def _p95(x: Any) -> Any:
    import numpy as np

    return np.percentile(x, 95, axis=-1)


def _p99(x: Any) -> Any:
    import numpy as np

    return np.percentile(x, 99, axis=-1)


def _throughput(x: Any) -> Any:  # one closed-loop client's requests a second
    import numpy as np

    return 1 / np.mean(x, axis=-1)


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x >= 0.01 else f"{x * 1000:.1f} ms"


def _spread(xs: list[float]) -> str:
    import numpy as np

    a = np.asarray(xs)
    return (
        f"mean {ms(float(a.mean()))}, p99 {ms(float(np.percentile(a, 99)))}, max "
        f"{ms(float(a.max()))}, sd {ms(float(a.std()))} ({len(a)} requests)"
    )


def _ratio(x: tuple[float, float, float]) -> str:
    return f"x{x[0]:.2f} (95%: {x[1]:.2f}..{x[2]:.2f})"


# -- the claims --------------------------------------------------------------------------


def cloudflare_order() -> Outcome:
    with Started("proc_spawn", workers=4) as sup:
        fifo = counted(sup, lambda: sequential_asleep(sup, 100))
    with Started("many_accepts", workers=4, exclusive=True) as sup:
        lifo = counted(sup, lambda: sequential_asleep(sup, 100))
    ours = f"blocking accept {'/'.join(map(str, fifo))}; EPOLLEXCLUSIVE {'/'.join(map(str, lifo))}"
    return Outcome(ours, *order_verdict(fifo, lifo))


def order_verdict(fifo: Sequence[int], lifo: Sequence[int]) -> tuple[bool, str]:
    """Confirmed when blocking accept's top share is <= 35%, EPOLLEXCLUSIVE's >= 60%, and
    chance does not explain EPOLLEXCLUSIVE's (a test against an even spread)."""
    top_fifo, top_lifo = max(fifo) / max(1, sum(fifo)), max(lifo) / max(1, sum(lifo))
    p = evenness.uniform_p(lifo)
    ok = top_fifo <= 0.35 and top_lifo >= 0.6 and p < evenness.ALPHA
    why = (
        f"top share {top_fifo:.0%} (FIFO: even is 25%) vs {top_lifo:.0%} (LIFO, "
        f"{evenness.p_text(p)} against an even spread); confirmed when <= 35% and >= 60% "
        f"(p < {evenness.ALPHA:g}) of {sum(fifo)} and {sum(lifo)} sequential connections"
    )
    return ok, why


def cloudflare_latency() -> Outcome:
    path = "/work?cpu_ms=5"
    sides = alternating(
        {"shared": ("proc_spawn", {"workers": 4}), "reuseport": ("reuseport", {"workers": 4})},
        {path: 3},
        4.0,
    )
    shared, hashed = sides["shared"].latencies[path], sides["reuseport"].latencies[path]
    if len(shared) < 20 or len(hashed) < 20:
        return Outcome(f"{len(shared)} and {len(hashed)} requests", None, "too few requests")
    sd, p99 = interval(shared, hashed, _sd), interval(shared, hashed, _p99)
    ours = f"shared queue {_spread(shared)}; reuseport {_spread(hashed)}"
    ok = sd[1] > 1
    why = f"reuseport's sd {_ratio(sd)} of the shared queue's (p99 {_ratio(p99)}): " + (
        "the sd's interval is above 1" if ok else "the sd's interval reaches 1 or below"
    )
    return Outcome(ours, ok, why)


NODE_WORKERS, NODE_BURST, NODE_ROUNDS = 8, 100, 5


def node_docs() -> Outcome:
    shares, ps = [], []
    with Started("many_accepts", workers=NODE_WORKERS) as sup:
        for _ in range(NODE_ROUNDS):
            counts = counted(sup, lambda: probes.burst_workers(sup.port, NODE_BURST))
            shares.append(sum(counts[:2]) / max(1, sum(counts)))
            ps.append(evenness.uniform_p(counts))
    mean = sum(shares) / len(shares)
    ours = (
        f"top 2 of 8 took {mean:.0%} ({min(shares):.0%}-{max(shares):.0%} over "
        f"{NODE_ROUNDS} bursts of {NODE_BURST}; even: 25%) on {os.cpu_count()} cores"
    )
    above = sum(s > 0.70 for s in shares)
    why = (
        f"{above} of {NODE_ROUNDS} bursts over 70%, the most even at {evenness.p_text(max(ps))} "
        f"against an even spread; confirmed when the mean is over 70% and every burst's "
        f"p < {evenness.ALPHA:g} (the docs give no machine or load)"
    )
    return Outcome(ours, mean > 0.70 and max(ps) < evenness.ALPHA, why)


HERBERT_CLIENTS, HERBERT_SECONDS = 8, 2.0


def _ratio_text(counts: Sequence[int]) -> tuple[float, str]:
    top, low = counts[0], counts[-1]
    if low == 0:
        return float("inf"), f"{top}:0"
    return top / low, f"{top / low:.1f}:1"


def herbert() -> Outcome:
    load = {"/": HERBERT_CLIENTS}
    with Started("many_accepts", workers=4) as sup:
        shared = counted(sup, lambda: closed_loop(sup.port, load, HERBERT_SECONDS))
    with Started("reuseport", workers=4) as sup:
        group = counted(sup, lambda: closed_loop(sup.port, load, HERBERT_SECONDS))
    t_shared, t_group = _ratio_text(shared)[1], _ratio_text(group)[1]
    ours = (
        f"shared socket {'/'.join(map(str, shared))} ({t_shared}); "
        f"SO_REUSEPORT {'/'.join(map(str, group))} ({t_group})"
    )
    return Outcome(ours, *herbert_verdict(shared, group))


def herbert_verdict(shared: Sequence[int], group: Sequence[int]) -> tuple[bool, str]:
    """Confirmed when the shared socket's busiest:idlest is >= 2:1, chance not explaining
    its spread (a test against an even one), and the group's <= 1.3:1."""
    (r_shared, t_shared), (r_group, t_group) = _ratio_text(shared), _ratio_text(group)
    p = evenness.uniform_p(shared)
    ok = r_shared >= 2.0 and p < evenness.ALPHA and r_group <= 1.3
    why = (
        f"busiest:idlest {t_shared} ({evenness.p_text(p)} against an even spread) vs "
        f"{t_group} (over {sum(shared)} and {sum(group)} accepts); confirmed when the shared "
        f"socket's is >= 2:1 (p < {evenness.ALPHA:g}) and the group's <= 1.3:1"
    )
    return ok, why


PUMA_LONG, PUMA_SECONDS = "/work?cpu_ms=300", 3.0


def puma() -> Outcome:
    sides = alternating(
        {policy: ("many_accepts", {"workers": 2, "accept_policy": policy})
         for policy in ("all", "less-busy")},
        {PUMA_LONG: 1, "/": 3},
        PUMA_SECONDS,
    )  # fmt: skip
    before, after = sides["all"].latencies["/"], sides["less-busy"].latencies["/"]
    if len(before) < 20 or len(after) < 20:
        return Outcome(f"{len(before)} and {len(after)} requests", None, "too few requests")
    p95 = interval(before, after, _p95)
    ours = f"all: {_spread(before)}; less-busy: {_spread(after)}"
    ok = p95[2] < 1
    why = f"less-busy's p95 {_ratio(p95)} of all's; " + (
        "below 1"
        if ok
        else "not below 1: a worker running a CPU-bound request here runs no event loop, so "
        "it accepts nothing meanwhile (only what it took in the same wake-up waits behind it: "
        "the max falls); the free worker's waits cost the rest"
    )
    return Outcome(ours, ok, why)


ENVOY_CLIENTS, ENVOY_SECONDS = 8, 2.5


def envoy() -> Outcome:
    sides = alternating(
        {policy: ("cluster", {"workers": 4, "policy": policy})
         for policy in ("round-robin", "least-connections")},
        {"/": ENVOY_CLIENTS},
        ENVOY_SECONDS,
    )  # fmt: skip
    rr, lc = sides["round-robin"], sides["least-connections"]
    # throughput: requests per second; its interval: a bootstrap of the per-request times
    tput = interval(rr.latencies["/"], lc.latencies["/"], _throughput)

    def said(side: Side) -> str:
        rate = len(side.latencies["/"]) / max(side.seconds, 1e-9)
        return f"{rate:.0f} req/s, master {side.master_ns / max(side.accepted, 1) / 1000:.0f} us"

    ours = f"round robin {said(rr)} a connection; least-connections {said(lc)} a connection"
    ok = tput[2] < 1
    why = f"least-connections' throughput {_ratio(tput)} of round robin's: " + (
        "lower: the cost is measurable"
        if ok
        else "no cost above the noise here (choosing reads 4 counters from shared memory)"
    )
    return Outcome(ours, ok, why)


CLAIMS: tuple[Claim, ...] = (
    Claim("cloudflare-order", "Cloudflare 2017, Why does one NGINX worker take all the load?",
          "blocking accept is FIFO (even); epoll with EPOLLEXCLUSIVE is LIFO: nearly all to one",
          "proc_spawn vs many_accepts --exclusive, 4 workers, 100 sequential connections",
          cloudflare_order, 4),
    Claim("cloudflare-latency", "Cloudflare 2017, the same post",
          "CPU-heavy handler, 12 workers: shared queue mean 30.39 ms, max 72.65, sd 1.58; "
          "reuseport mean 31.37 ms, max 144.55, sd 25.27",
          "proc_spawn (one shared queue) vs reuseport, 4 workers, 3 clients of 5 ms CPU, "
          "4 s each in 4 alternating rounds",
          cloudflare_latency, 12),
    Claim("node-docs", "Node.js cluster docs",
          "with the OS balancing, over 70% of connections in 2 of 8 processes",
          f"many_accepts, 8 workers, {NODE_ROUNDS} bursts of {NODE_BURST} connections",
          node_docs, 4),
    Claim("herbert-3to1", "Tom Herbert, SO_REUSEPORT commit (Linux 3.9)",
          "shared socket: busiest to idlest \"as high as 3:1\"; SO_REUSEPORT: \"uniform\"",
          f"many_accepts vs reuseport, 4 workers, {HERBERT_CLIENTS} clients, a connection "
          f"per request, {HERBERT_SECONDS:g} s", herbert, 7),
    Claim("puma-3969", "puma PR #3969 (wait_for_less_busy_worker)",
          "one of two workers pinned by a 12 s request: p95 11,493 ms -> 11 ms",
          f"many_accepts, 2 workers, one client of {PUMA_LONG}, 3 of /: accept policy all "
          "vs less-busy, 3 s each in 4 alternating rounds", puma, 15),
    Claim("envoy-exact", "envoy docs, exact_balance",
          "exact balance \"sacrifices accept throughput for accuracy\"",
          f"cluster --policy round-robin vs least-connections, 4 workers, {ENVOY_CLIENTS} "
          "clients, a connection per request, 2.5 s each in 4 alternating rounds", envoy, 9),
)  # fmt: skip

KEYS = tuple(c.key for c in CLAIMS)


def select(only: Sequence[str] = ()) -> list[Claim]:
    for key in only:
        if key not in KEYS:
            raise ConfigError(f"--only: unknown claim {key!r}; choose from: {', '.join(KEYS)}")
    return [c for c in CLAIMS if not only or c.key in only]


def run(
    selected: Sequence[Claim],
    *,
    budget: float,
    on_row: Callable[[ClaimRow], None] | None = None,
) -> ClaimsRun:
    """Each claim in turn; one whose usual time would end past `budget` is not started."""
    out = ClaimsRun()
    t0 = time.monotonic()
    for claim in selected:
        if time.monotonic() - t0 + claim.seconds > budget:
            out.skipped.append(claim.key)
            continue
        c0 = time.monotonic()
        try:
            outcome = claim.measure()
        except (ServerError, ConfigError, OSError) as e:
            outcome = Outcome("not measured", None, f"{type(e).__name__}: {e}")
        row = ClaimRow(claim, outcome, time.monotonic() - c0)
        out.rows.append(row)
        if on_row is not None:
            on_row(row)
    out.seconds = time.monotonic() - t0
    return out
