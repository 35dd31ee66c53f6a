"""The accept-skew rule's false alarms and hits, per run (issue 22), run by hand.

The rule is evaluated four times a second over overlapping 5 s windows, so a per-test
significance of p < 0.001 says little about a run: this measures per run.

    .venv/bin/python bench/bench_skew.py even [--runs 20] [--duration 60]
        [--servers proc_spawn,reuseport,cluster,apache:event] [--presets light,steady,...]
    .venv/bin/python bench/bench_skew.py real [--runs 5] [--duration 20]
    .venv/bin/python bench/bench_skew.py random [--spreads 10000] [--uniform]

even: servers that spread evenly (blocking accept, reuseport's hash, cluster's round robin,
Apache event), each under each preset for `duration` s, `runs` times: per run, the samples
taken during the load that carried accept_skew (each a false alarm) and its first message;
then per server and preset the runs with any. The target: 0 runs of 20.

real: the real skews, which must still fire: many_accepts with plain epoll and with
--exclusive, Node's many_accepts (SCHED_NONE) under burst, steady and keepalive-idle, and
the Cloudflare-style sequence (one connection after another, one request each, against
many_accepts --exclusive: LIFO wake-ups give nearly all to one worker): per run whether
it fired, and the share of the samples past the first window that carried it.

random: `spreads` random even spreads (workers uniform in 2-64, accepts log-uniform in
20-2,000, or uniform with --uniform), each a multinomial draw, through the rule's test
(skew.skew_p): how many were judged at all (the size floors) and how many fired.
"""

from __future__ import annotations

import argparse
import math
import random
import socket
import sys
import threading
import time
from collections import Counter

from old_skew import old_accept_skew

from judging import analysis, skew
from judging.analyser import Analyser
from lab.headless import run_headless
from lab.server import open_server, sampler_for
from loadgen.levels import PRESETS
from servers.config import ServerConfig
from values.snapshot import Snapshot

EVEN = ("proc_spawn", "reuseport", "cluster", "apache:event")


def _skews(seen: list[Snapshot], during: list[bool]) -> tuple[int, int, int, str]:
    """(samples carrying a fresh accept_skew, samples where the old rule fired, samples
    judged, the first message), over the samples flagged in `during`; the old rule is
    run on the same windows (the analyser's 5 s)."""
    new = old = 0
    first = ""
    for i, s in enumerate(seen):
        if not during[i]:
            continue
        hits = [d.message for d in s.diagnoses if d.rule == "accept_skew"]
        hits = [m for m in hits if "last seen" not in m]
        new += bool(hits)
        first = first or (hits[0] if hits else "")
        old += old_accept_skew(analysis.window(seen[: i + 1]))
    return new, old, sum(during), first


def one_run(config: ServerConfig, preset: str, duration: float) -> tuple[int, int, int, str]:
    """One headless run; its samples during the load (not its drain) judged, and the
    run's own accept spread (the summary's, over the load) before the first message."""
    seen: list[Snapshot] = []
    level = PRESETS[preset].with_(duration=duration)
    s = run_headless(config, level, on_sample=lambda snap, *_: seen.append(snap))
    if not s.ok:
        print(f"    (run not ok: {s.load_error or s.server_error})", flush=True)
    shares = sorted((w.accepts for w in s.workers if w.role == "worker"), reverse=True)
    jain = "-" if s.accept_jain is None else f"{s.accept_jain:.2f}"
    during = [x.client is not None and x.client.running and not analysis.load_over(x) for x in seen]
    new, old, of, first = _skews(seen, during)
    spread = f"the run: Jain {jain} over {s.accept_n} workers, accepts {shares[:8]}"
    return new, old, of, f"{spread}; {first}" if first else spread


def even(a: argparse.Namespace) -> None:
    servers = a.servers.split(",") if a.servers else list(EVEN)
    presets = a.presets.split(",") if a.presets else list(PRESETS)
    print(f"even servers, {a.runs} runs x {a.duration:g} s per server and preset", flush=True)
    table = []
    for server in servers:
        for preset in presets:
            fired = was = 0
            for k in range(a.runs):
                n, old, of, first = one_run(ServerConfig(model=server), preset, a.duration)
                fired += n > 0
                was += old > 0
                print(f"  {server:13} {preset:15} run {k + 1}: {n}/{of} samples with accept_skew"
                      f" (old rule: {old}){'  ' + first if first else ''}", flush=True)  # fmt: skip
            table.append((server, preset, fired, was))
    print("runs that raised accept_skew (false alarms), today's rule and the old one:")
    for server, preset, fired, was in table:
        print(f"  {server:13} {preset:15} {fired}/{a.runs}  (old rule: {was}/{a.runs})")


def _sequence(port: int, stop: threading.Event) -> int:
    """One connection after another, one request each (Cloudflare's test); how many."""
    done = 0
    req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(req)
            while c.recv(65536):
                pass
        done += 1
    return done


def cloudflare_run(duration: float) -> tuple[int, int, int, str]:
    srv = open_server(ServerConfig(model="many_accepts", workers=4, exclusive=True))
    srv.start()
    stop = threading.Event()
    seen: list[Snapshot] = []
    try:
        sampler, analyser = sampler_for(srv), Analyser()
        t = threading.Thread(target=_sequence, args=(srv.port, stop), daemon=True)
        t.start()
        end = time.monotonic() + duration
        while time.monotonic() < end:
            seen.append(analyser.annotate(sampler.sample()))
            time.sleep(0.25)
        stop.set()
        t.join(10)
        sampler.close()
    finally:
        srv.stop()
    skip = int(analysis.DEFAULT_WINDOW_S / 0.25)  # past the first window
    return _skews(seen, [i >= skip for i in range(len(seen))])


def real(a: argparse.Namespace) -> None:
    cases = [
        ("many_accepts", ServerConfig(model="many_accepts")),
        ("many_accepts --exclusive", ServerConfig(model="many_accepts", exclusive=True)),
        ("node:many_accepts", ServerConfig(model="node:many_accepts")),
    ]
    presets = a.presets.split(",") if a.presets else ["burst", "steady", "keepalive-idle"]
    print(f"real skews, {a.runs} runs x {a.duration:g} s", flush=True)
    table = []
    for name, cfg in cases:
        for preset in presets:
            fired = was = 0
            for k in range(a.runs):
                n, old, of, first = one_run(cfg, preset, a.duration)
                fired += n > 0
                was += old > 0
                print(f"  {name:25} {preset:15} run {k + 1}: {n}/{of} samples (old rule: "
                      f"{old}){'  ' + first if first else ''}", flush=True)  # fmt: skip
            table.append((name, preset, fired, was))
    fired = was = 0
    for k in range(a.runs):
        n, old, of, first = cloudflare_run(a.duration)
        fired += n > 0
        was += old > 0
        print(f"  {'sequence --exclusive':25} {'sequential':15} run {k + 1}: {n}/{of} samples "
              f"past the first window (old rule: {old}){'  ' + first if first else ''}",
              flush=True)  # fmt: skip
    table.append(("sequence --exclusive", "sequential", fired, was))
    print("runs that raised accept_skew (hits), today's rule and the old one:")
    for name, preset, f, w in table:
        print(f"  {name:25} {preset:15} {f}/{a.runs}  (old rule: {w}/{a.runs})")


def random_spreads(a: argparse.Namespace) -> None:
    rng = random.Random(a.seed)
    judged = fired = 0
    by_size: Counter[str] = Counter()
    for _ in range(a.spreads):
        n = rng.randint(2, 64)
        if a.uniform:
            total = rng.randint(20, 2000)
        else:
            total = round(math.exp(rng.uniform(math.log(20), math.log(2000))))
        counts = [0] * n
        for c in rng.choices(range(n), k=total):
            counts[c] += 1
        p = skew.skew_p(counts)
        judged += p is not None
        if p is not None and p < skew.evenness.ALPHA:
            fired += 1
            by_size[f"{n} workers, {total} accepts"] += 1
    kind = "uniform" if a.uniform else "log-uniform"
    print(f"{a.spreads} even random spreads (2-64 workers, 20-2,000 accepts {kind}, seed "
          f"{a.seed}): {judged} past the floors and shape, {fired} fired "
          f"({100 * fired / a.spreads:.3f}%)")  # fmt: skip
    for what, k in by_size.most_common(10):
        print(f"  fired: {what} (x{k})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=("even", "real", "random"))
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--servers", default="")
    p.add_argument("--presets", default="")
    p.add_argument("--spreads", type=int, default=10_000)
    p.add_argument("--uniform", action="store_true")
    p.add_argument("--seed", type=int, default=22)
    a = p.parse_args()
    t0 = time.monotonic()
    {"even": even, "real": real, "random": random_spreads}[a.what](a)
    print(f"({time.monotonic() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
