"""Go stacks: the goroutine dump of `net/http/pprof` (`/debug/pprof/goroutine?debug=2`),
for a Go process started with `-pprof-addr=127.0.0.1:PORT` (the Go original is; its
launcher picks the port). Every goroutine with its function, file and line, which a
native unwinder cannot give: goroutines are not threads.

Only that address is asked, and only when the process itself listens there on loopback:
the server's own ports are never sent a request (it would count as the server's traffic),
so any other Go program gets native frames (eu-stack).

The dump stops the world while the runtime walks every goroutine (runtime.Stack); the
pause is not visible from outside, so `stopped_s` is None; bench/bench_stacks.py measures
it from inside a Go program.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import time
from dataclasses import replace

from values.stackvalues import CaptureFailed, Frame, StackCapture, ThreadStack

from .procfs import read_tcp_table, socket_inodes

FLAG = "-pprof-addr"
PATH = "/debug/pprof/goroutine?debug=2"
SELF = "runtime/pprof.writeGoroutineStacks"
MAX_BYTES = 32 * 1024 * 1024  # 100,000 goroutines are ~50 MB of text: read this much at most


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def pprof_address(pid: int) -> tuple[str, int] | None:
    """(host, port) of the pprof listener named on the process's command line, when it is a
    loopback address the process itself listens on; else None."""
    cmd = _cmdline(pid)
    value = None
    for i, arg in enumerate(cmd):
        for flag in (FLAG, "-" + FLAG):
            if arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            elif arg == flag and i + 1 < len(cmd):
                value = cmd[i + 1]
    if not value or ":" not in value:
        return None
    host, _, port_text = value.rpartition(":")
    if not port_text.isdigit() or not _loopback(host):
        return None
    port = int(port_text)
    mine = set(socket_inodes(pid))
    if not any(ln.port == port and ln.inode in mine for ln in read_tcp_table().listens):
        return None
    return host.strip("[]"), port


_HEAD = re.compile(r"^goroutine (\d+) \[([^\]]*)\]:$")
_SOURCE = re.compile(r"^\t(\S+):(\d+)(?: \+0x[0-9a-f]+)?$")


def _package(function: str) -> str:
    """The package path of a Go function name: net/http.(*conn).serve -> net/http."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function[:dot] if dot > 0 else function


def parse_goroutines(text: str) -> tuple[ThreadStack, ...]:
    out: list[ThreadStack] = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        if not lines or not (m := _HEAD.match(lines[0])):
            continue
        frames: list[Frame] = []
        origin = None
        for line in lines[1:]:
            if src := _SOURCE.match(line):
                if frames:
                    frames[-1] = replace(frames[-1], file=src.group(1), line=int(src.group(2)))
            elif line.startswith("created by "):
                origin = line.split(" in goroutine ")[0]
            elif line and not line.startswith("\t"):
                function = line[: line.rfind("(")] if line.endswith(")") else line
                frames.append(Frame(function, module=_package(function), native=True))
        out.append(ThreadStack(None, f"goroutine {m.group(1)}", m.group(2), tuple(frames), origin))
    return tuple(out)


def goroutines(base: StackCapture, deadline: float) -> StackCapture:
    where = pprof_address(base.pid)
    if where is None:
        raise CaptureFailed(f"pid {base.pid} does not listen on a {FLAG} loopback address")
    host, port = where
    conn = http.client.HTTPConnection(host, port, timeout=max(0.1, deadline - time.monotonic()))
    try:
        conn.request("GET", PATH, headers={"Host": f"{host}:{port}"})
        resp = conn.getresponse()
        body = resp.read(MAX_BYTES)
    except (OSError, http.client.HTTPException) as e:
        raise CaptureFailed(f"pprof at {host}:{port} did not answer: {e}") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise CaptureFailed(f"pprof at {host}:{port} answered {resp.status} {resp.reason}")
    every = parse_goroutines(body.decode(errors="replace"))
    # the goroutine writing this dump is the monitor's own request, not the server's work
    threads = tuple(t for t in every if not any(f.function == SELF for f in t.frames))
    if not threads:
        raise CaptureFailed(f"pprof at {host}:{port} sent no goroutine")
    return replace(
        base,
        method=f"pprof goroutine dump (http://{host}:{port}{PATH})",
        threads=threads,
        stopped_s=None,
        stopped_how="Go stops the world while it writes the dump, not visible from outside",
    )
