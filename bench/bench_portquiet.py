"""What counting the events on a server's ports (readers.portquiet, the eBPF programs of
readers.accepts_bpf with `changes`) adds to the server's own syscalls: the kernel runs
them in the thread that sends or receives, so a busy server pays them, not the monitor.

    python bench/bench_portquiet.py [--rounds 20000] [--repeats 5]   (as root, bpftrace)

One loopback TCP connection to a listener on port P; a round is the server side sending
one byte and reading the client's one-byte answer (a sendmsg and a recvmsg on P's socket,
data in on both sides; the client is a forked process): a keep-alive request's syscalls
without the server's work. Cost: the server thread's CPU per round (time.thread_time, the
kernel's share and the probes included) in three settings, alternating in one run: no
bpftrace (the reference), bpftrace counting accepts and queue wait on P (what attach ran
before), and the same with the events on P counted too; printed against the reference.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from readers import accepts_bpf
from readers.accepts_bpf import AcceptCounter


def rounds_us(server: socket.socket, n: int) -> float:
    """Server thread CPU per round, microseconds (the client answers in another process)."""
    t0 = time.thread_time()
    for _ in range(n):
        server.sendall(b"x")
        server.recv(1)
    return (time.thread_time() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    why = accepts_bpf.queue_unavailable() or accepts_bpf.changes_unavailable()
    if why:
        raise SystemExit(f"cannot run: {why}")
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    port = lst.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = lst.accept()
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    answerer = os.fork()
    if answerer == 0:  # the client: answers each byte until the server closes
        server.close()
        while client.recv(1):
            client.sendall(b"y")
        os._exit(0)
    client.close()
    settings = {"none": None, "accepts+queue": False, "with events": True}
    got: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(a.repeats):
        for name, changes in settings.items():
            if changes is None:
                got[name].append(rounds_us(server, a.rounds))
                continue
            with AcceptCounter(os.getpid(), ports=(port,), changes=changes):
                got[name].append(rounds_us(server, a.rounds))
    ref = statistics.median(got["none"])
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"server thread CPU per round (a 1-byte send + recv on the port), {a.rounds} rounds")
    for name, xs in got.items():
        m = statistics.median(xs)
        print(
            f"  {name:14s} median {m:6.2f} us  (+{m - ref:5.2f} us, x{m / ref:.2f} of the "
            f"reference; runs {', '.join(f'{x:.2f}' for x in xs)})"
        )
    print(f"  load average {load}")
    for s in (server, lst):
        s.close()
    os.waitpid(answerer, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
