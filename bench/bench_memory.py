"""What misbehaving clients cost each model's memory, and how long slow clients freeze it.

    .venv/bin/python bench/bench_memory.py [--attacks nonread,reset,read,slow] [--small]
                                           [models...]

Per model and attack, on a fresh server: the tree's memory (RSS and PSS summed over the
root and its workers, from /proc/PID/smaps_rollup) before the attack, at its peak (sampled
every 20 ms) and after it (the clients gone, every connection closed, the figure settled),
with the growth of each against before; then the same attack again and what that second
round added (memory the first round left and the second reused is allocator retention
or a one-time cost, not growth per attack). The attacks (tests/attacks.py):

- nonread: 100 clients with a 4 KiB receive buffer send GET /work?bytes=16777216 and read
  nothing for 3 s, then close.
- reset: 100 clients, 20 at a time, read 256 KiB of a 16 MiB reply, then reset.
- read: five rounds of 20 concurrent clients reading a 16 MiB reply in full.
- slow: 300 clients send a request one byte a second (slowloris) and are not replaced
  when closed; when GET / stops being answered within 1 s, when it is answered again (at
  most --slow-seconds), and how many slow clients were answered 408.

Before the attack, 20 clients at once read 64 KiB of a 1 MiB reply and reset (a warm-up:
every worker's first connections cost it objects and pages once). Default knobs are the
models' own (proc_spawn: 250 processes, prefork up to 256), as
`serverscope serve MODEL` runs them; --small uses the fuzz tests' small pools.

Issue 23, on the shared 2-core machine, the code before the fix and after (PSS):
nonread peak growth: worker and event +2,200 MiB -> +0.4, many_accepts +1,497 -> +2.5,
goroutines +1,216 -> +0.5, proc_spawn +2,061 -> +54 (the first request of each of 100
processes that had not served: ~0.5 MiB each), prefork +780 -> +15 (its pool grows).
reset, after/before: worker 33.4x -> 1.01x, event 33.9x -> 1.00x, many_accepts 24.1x ->
1.09x, proc_spawn 2.98x -> 1.08x, every model within 1.10x after. slow: proc_spawn frozen
60 s -> 20 s, prefork 66 s -> 25 s; worker and event 408 a wave of 75 slow clients every
20 s instead of one at 60 s; the asyncio models answer GET / throughout, before and after.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import attacks
import fuzzing
from attacks import MIB, Memory, Peak
from servers.config import ServerConfig
from servers.models import MODEL_NAMES
from servers.supervisor import Supervisor

ATTACKS = ("nonread", "reset", "read", "slow")


def _wait_closed(sup: Supervisor, timeout: float = 90.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if sup.read().totals()["open"] == 0:
            return True
        time.sleep(0.1)
    return False


def _nonread(sup: Supervisor) -> str:
    socks = attacks.non_readers(sup.port, 100)
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            time.sleep(0.1)
        writing = attacks.writing(sup.port)
    finally:
        attacks.close_all(socks)
    return f"{writing} replies waiting in the kernel"


def _reset(sup: Supervisor) -> str:
    done = attacks.resets(sup.port, 100)
    return f"{done}/100 reset mid-reply"


def _read(sup: Supervisor) -> str:
    whole = sum(attacks.full_reads(sup.port, 20) for _ in range(5))
    return f"{whole}/100 read in full"


def _slow(sup: Supervisor, seconds: float) -> str:
    socks = attacks.slow_senders(sup.port, 300)
    t0 = time.monotonic()
    frozen_from: float | None = None
    freed_at: float | None = None
    try:
        while time.monotonic() - t0 < seconds:
            tick = time.monotonic()
            attacks.trickle(socks)
            ok = fuzzing.answers_root(sup.port, 1.0)
            now = time.monotonic() - t0
            if not ok and frozen_from is None:
                frozen_from = now
            if ok and frozen_from is not None:
                freed_at = now
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        timed_out = sum(1 for s in socks if _got_408(s))
    finally:
        attacks.close_all(socks)
    took = f"{timed_out}/300 slow clients answered 408"
    if frozen_from is None:
        return f"GET / answered within 1 s throughout; {took}"
    if freed_at is None:
        return f"GET / unanswered from {frozen_from:.0f} s to the end ({seconds:.0f} s); {took}"
    return f"GET / unanswered from {frozen_from:.0f} s, answered again at {freed_at:.0f} s; {took}"


def _got_408(s: socket.socket) -> bool:
    s.setblocking(False)  # with a timeout set, recv() would wait for data that never comes
    try:
        return s.recv(12).startswith(b"HTTP/1.1 408")
    except OSError:
        return False


def _attack(sup: Supervisor, attack: str, slow_seconds: float) -> str:
    if attack == "nonread":
        return _nonread(sup)
    if attack == "reset":
        return _reset(sup)
    if attack == "read":
        return _read(sup)
    return _slow(sup, slow_seconds)


def bench(model: str, attack: str, small: bool, slow_seconds: float) -> str:
    knobs = fuzzing.FUZZ_KNOBS[model] if small else {}
    sup = Supervisor(ServerConfig(model=model, **knobs)).start(timeout=60)  # type: ignore[arg-type]
    try:
        # warm up as tests/test_memory.py does: 20 clients at once reset 1 MiB replies, so
        # that the first connections' own costs (objects, buffers, pages copied from the
        # master) are in `before`, not counted as the attack's
        attacks.resets(sup.port, 20, nbytes=1 * MIB, read=64 * 1024)
        _wait_closed(sup)
        before = attacks.settle(sup.pids)
        t0 = time.monotonic()
        with Peak(sup.pids) as peak:
            what = _attack(sup, attack, slow_seconds)
            closed = _wait_closed(sup)
        took = time.monotonic() - t0
        after = attacks.settle(sup.pids, timeout=10.0)
        line = (
            f"{model:<13} {attack:<8} before {_fmt(before)}  peak {_fmt(peak.peak)} "
            f"({_delta(peak.peak - before)})  after {_fmt(after)} ({_delta(after - before)}, "
            f"{_ratio(after, before)})"
        )
        if attack != "slow":  # a second round: what the first left is kept or reused?
            _attack(sup, attack, slow_seconds)
            closed = _wait_closed(sup) and closed
            again = attacks.settle(sup.pids, timeout=10.0)
            line += f"  after a 2nd round PSS {_d(again.pss - after.pss)} ({_ratio(again, after)})"
        stuck = "" if closed else "  CONNECTIONS STILL OPEN"
        return f"{line}{stuck}  {took:.1f} s  {what}"
    finally:
        sup.stop()


def _ratio(a: Memory, b: Memory) -> str:
    return f"{a.pss / b.pss:.2f}x" if b.pss else "?"


def _d(nbytes: int) -> str:
    return f"{nbytes / MIB:+.1f} MiB"


def _fmt(m: Memory) -> str:
    return f"RSS {m.rss / MIB:6.1f} PSS {m.pss / MIB:6.1f}"


def _delta(m: Memory) -> str:
    return f"RSS {m.rss / MIB:+7.1f} PSS {m.pss / MIB:+7.1f} MiB"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--attacks", default=",".join(ATTACKS), help="comma-separated: " + ",".join(ATTACKS)
    )
    p.add_argument("--small", action="store_true", help="the fuzz tests' small pools")
    p.add_argument("--slow-seconds", type=float, default=70.0, help="cap of the slow attack")
    p.add_argument("models", nargs="*", default=list(MODEL_NAMES))
    a = p.parse_args()
    chosen = [x for x in a.attacks.split(",") if x]
    bad = [x for x in chosen if x not in ATTACKS]
    if bad:
        p.error(f"unknown attack {bad[0]!r}; choose from {', '.join(ATTACKS)}")
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for attack in chosen:
        for m in a.models:
            print(bench(m, attack, a.small, a.slow_seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
