"""Which of serverscope's files `serverscope attach --once` walks through, and how often it
comes back to one it had left: a figure of how tangled a command's path is, not of speed.

    .venv/bin/python bench/attach_callpath.py            # on a python3 -m http.server
    .venv/bin/python bench/attach_callpath.py --port P   # on a server already running
    .venv/bin/python bench/attach_callpath.py --depth 3 --show

It runs `commands.main.main(["attach", "--once", ...])` in this process under
`sys.setprofile` and follows the file (under src/) the running code is in, from entering
`commands/attach.py:run` to its return, counting only frames at most `--depth` calls below
`run` (depth 0 is `run` itself): deeper frames are the readers' own loops, which revisit
their helpers thousands of times per sample and say nothing of the command's shape. A
call into a file and the return from it both move the path; consecutive frames in the same
file are one stay. Reported: the files entered, the distinct ways into each, which rooms
(src/ packages) it passed through, and the returns: distinct moves into a file the path had
already left (distinct, so that the sampling loop of --once counts once).

Measured for the One Watch refactor (before: commands/attach.py assembled the sampler,
analyser, exporter and recorder itself and ran the --once loop; after: it builds the lab's
Attachment and observes its Watch), on a python3 -m http.server, as root (eBPF accepts):

    depth  before: files, returns (raw moves)       after: files, returns (raw moves)
    1      4, 3 (9 stays)   commands sources judging   3, 2 (9 stays)   commands lab
    2      9, 8 (71 stays)  + text; never lab/         7, 8 (19 stays)  commands lab sources text
    3      14, 13 (431 stays)                          8, 11 (27 stays)

At depth 2 commands/attach.py was 31 of the 71 stays (it called the sampler and the
analyser for each of --once's 16 samples), 8 of the 19 after. Counts, not timings.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path[:0] = [str(SRC), str(ROOT / "tests")]

from commands import main as cli  # noqa: E402
from realservers import free_port  # noqa: E402


def trace(argv: list[str], depth: int) -> list[str]:
    """The src files the path stays in, in order, within `depth` calls below attach's run."""
    path: list[str] = []
    stack: list[str | None] = []  # per live frame at or below run: its src file, or None
    inside = False

    def here() -> None:
        frames = [f for f in stack[: depth + 1] if f is not None]
        if frames and (not path or path[-1] != frames[-1]):
            path.append(frames[-1])

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal inside
        if event not in ("call", "return"):
            return
        name = frame.f_code.co_filename
        src = str(Path(name).relative_to(SRC)) if name.startswith(str(SRC)) else None
        if not inside:
            if event == "call" and src == "commands/attach.py" and frame.f_code.co_name == "run":
                inside = True
                stack.append(src)
                here()
            return
        if event == "call":
            stack.append(src)
            if len(stack) <= depth + 1:
                here()
        else:
            stack.pop()
            if not stack:
                inside = False
                return
            if len(stack) <= depth + 1:
                here()

    threading_profile = sys.getprofile()
    sys.setprofile(profile)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(argv)
    finally:
        sys.setprofile(threading_profile)
    if code != 0:
        raise SystemExit(f"attach exited {code}")
    return path


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def walk(path: list[str]) -> tuple[collections.Counter[str], int]:
    """Per file, the distinct ways into it (the start counts one), and the returns: distinct
    moves into a file the path had already left. Distinct, so the sampling loop (the same
    moves once per sample, 13-17 samples in --once's span) counts once."""
    entered: collections.Counter[str] = collections.Counter(path[:1])
    moves: set[tuple[str, str]] = set()
    seen, returns = set(path[:1]), 0
    for a, b in itertools.pairwise(path):
        if (a, b) not in moves:
            moves.add((a, b))
            entered[b] += 1
            returns += b in seen
        seen.add(b)
    return entered, returns


def report(path: list[str], show: bool) -> None:
    entered, returns = walk(path)
    rooms = sorted({p.split("/")[0] for p in path})
    print(f"files entered: {len(entered)}; returns to files already left: {returns}")
    print(f"(raw path: {len(path)} stays, {len(path) - len(set(path))} returns, the loop included)")
    print(f"rooms: {', '.join(rooms)}")
    for name, n in entered.most_common():
        print(f"  {n:3d}  {name}")
    if show:
        print(" -> ".join(path))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, help="a server already listening (default: start one)")
    p.add_argument("--depth", type=int, default=2, help="calls below run followed (2)")
    p.add_argument("--show", action="store_true", help="print the path itself")
    p.add_argument("more", nargs="*", help="more attach options (after --)")
    a = p.parse_args()
    with contextlib.ExitStack() as stack:
        port = a.port or stack.enter_context(http_server())
        argv = ["attach", "--once", "--port", str(port), *a.more]
        report(trace(argv, a.depth), a.show)


if __name__ == "__main__":
    main()
