"""One stalled reuseport worker restarted, with or without --migrate: run as a script in a
network namespace of its own (tests/netns.py), where it may set net.ipv4.tcp_migrate_req.
Prints one JSON object: what the clients got and what `ss -ltne` showed inside.

    python tests/migrate_run.py --host-netns INODE [--migrate [--sysctl-off]] [--young]
        [--clients N] [--workers N] [--watchdog S]

The worker in slot 0 is stopped (SIGSTOP), then N clients each connect and send GET /:
the connections the kernel hashes to slot 0's socket wait in its queue. Once `ss` shows
them there, that worker is killed (a restart: the master starts another in its slot),
and every client's reply is read. With --migrate the queue moves to the other sockets
as soon as the stopped worker's socket closes; without, the master still holds that
socket, and its queue waits for the new worker. With --watchdog S nobody kills it: the
master's watchdog does, once its loop has been silent S seconds (servers.watchdog).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from judging.analyser import Analyser
from servers.config import ServerConfig
from servers.migrate import SYSCTL
from servers.supervisor import Supervisor
from sources.sampler import Sampler

T = TypeVar("T")
GET = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def own_netns(host: int) -> bool:
    """True when this process is not in the caller's network namespace (inode `host`)."""
    return os.stat("/proc/self/ns/net").st_ino != host


def ss_listen(port: int) -> dict[int, int]:
    """{inode: Recv-Q} of the LISTEN sockets on `port`, as `ss -ltne` shows them here."""
    out = subprocess.run(
        ["ss", "-Hltne", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    queues = {}
    for line in out.splitlines():
        m = re.search(r"ino:(\d+)", line)
        if m:
            queues[int(m.group(1))] = int(line.split()[1])
    return queues


def inodes_of(pid: int) -> set[int]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def wait(cond: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--migrate", action="store_true")
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument(
        "--sysctl-off",
        action="store_true",
        help="with --migrate: set tcp_migrate_req back to 0 once the server runs (the "
        "workers own their sockets, the kernel does not migrate): what a close does then",
    )
    ap.add_argument(
        "--young",
        action="store_true",
        help="kill the stalled worker as soon as its queue is seen, not once diagnosed: "
        "it has lived under 1 s, so the master waits its respawn backoff (1 s) first",
    )
    ap.add_argument(
        "--watchdog",
        type=float,
        default=0.0,
        help="--worker-timeout S: the master's watchdog kills the stopped worker, not us",
    )
    ap.add_argument("--host-netns", type=int, required=True, help="the caller's netns inode")
    args = ap.parse_args()
    if args.migrate:
        if not own_netns(
            args.host_netns
        ):  # never the host's: this changes every server's behaviour
            raise SystemExit("refusing to set tcp_migrate_req outside a namespace of our own")
        with open(SYSCTL, "w") as f:
            f.write("1")
    cfg = ServerConfig(
        model="reuseport",
        workers=args.workers,
        migrate=args.migrate,
        worker_timeout=args.watchdog,
    )
    result: dict = {"migrate": args.migrate, "sysctl_off": args.sysctl_off, "clients": args.clients}
    with Supervisor(cfg) as sup:
        sampler = Sampler.for_supervisor(sup)
        if args.sysctl_off:
            with open(SYSCTL, "w") as f:
                f.write("0")
        board = sup.read()
        stalled = board.slots[0].pid
        survivors = {s.pid for s in board.slots[1 : args.workers]}
        mine = inodes_of(stalled) & set(ss_listen(sup.port))
        assert len(mine) == 1, mine
        (inode,) = mine
        os.kill(stalled, signal.SIGSTOP)
        stopped_at = time.monotonic()
        sel = selectors.DefaultSelector()
        replies: dict[socket.socket, bytes] = {}
        for _ in range(args.clients):
            c = socket.create_connection(("127.0.0.1", sup.port), timeout=5)
            c.sendall(GET)
            c.setblocking(False)
            replies[c] = b""
            sel.register(c, selectors.EVENT_READ)
        done: dict[socket.socket, str] = {}

        def pump(timeout: float) -> None:
            for key, _ in sel.select(timeout):
                c = key.fileobj
                try:
                    chunk = c.recv(65536)
                except ConnectionResetError:
                    done[c] = "reset"
                    sel.unregister(c)
                    continue
                if chunk:
                    replies[c] += chunk
                else:
                    done[c] = "200" if replies[c].startswith(b"HTTP/1.1 200") else "other"
                    sel.unregister(c)

        def settled() -> bool:
            pump(0.05)
            queued = ss_listen(sup.port).get(inode, 0)
            return queued > 0 and queued + len(done) == args.clients

        wait(settled, 20, "the others to answer and the rest to queue")
        queued = ss_listen(sup.port)
        result["queued_stalled"] = queued[inode]
        result["answered_before"] = len(done)
        snap = sampler.sample()
        result["ss"] = sorted(queued.values())
        result["ours"] = sorted(ln.queue for ln in snap.listeners)
        result["ours_by_inode"] = {ln.inode: ln.queue for ln in snap.listeners}
        result["ss_by_inode"] = queued
        result["source"] = sorted({ln.source for ln in snap.listeners})
        before = {s.pid: s.accepted for s in sup.read().slots if s.pid in survivors}
        # sampled (4 Hz, analysed) until the stall is diagnosed (stopped >= 1 s), which is
        # also past the arbiter's respawn backoff for a worker that lived under 1 s: the
        # time measured below is then the restart's own, not the backoff's
        analyser = Analyser()

        def diagnosed() -> str | None:
            snap = analyser.annotate(sampler.sample())
            time.sleep(0.25)
            found = [d.message for d in snap.diagnoses if d.rule == "stalled_owner"]
            return found[0] if found else None

        result["pids"] = sup.pids()
        if args.watchdog:  # the master kills it (and respawns slot 0) on its own
            wait(lambda: not os.path.exists(f"/proc/{stalled}"), args.watchdog + 10, "the kill")
            t0 = time.monotonic()
            result["killed_after_s"] = round(t0 - stopped_at, 3)
        else:
            if not args.young:
                result["diagnosis"] = wait(diagnosed, 10, "the stall's diagnosis")
            t0 = time.monotonic()
            os.kill(stalled, signal.SIGKILL)  # a restart: the master respawns slot 0
        deadline = t0 + 15
        while len(done) < args.clients and time.monotonic() < deadline:
            pump(0.1)
        result["answer_s"] = round(time.monotonic() - t0, 3)
        result["outcomes"] = {k: list(done.values()).count(k) for k in ("200", "reset", "other")}
        result["unanswered"] = args.clients - len(done)
        new = wait(
            lambda: next((s for s in sup.read().slots[:1] if s.pid not in (0, stalled)), None),
            10,
            "slot 0's new worker",
        )
        fresh = wait(lambda: inodes_of(new.pid) & set(ss_listen(sup.port)), 10, "its socket")
        result["new_socket"] = fresh != {inode}
        result["pids"].append(new.pid)
        result["old_socket_listening"] = inode in ss_listen(sup.port)
        after = sup.read().slots
        result["by_survivors"] = sum(s.accepted for s in after if s.pid in survivors) - sum(
            before.values()
        )
        result["by_new_worker"] = after[0].accepted if after[0].pid == new.pid else None
        for c in replies:
            c.close()
        sampler.source.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
