"""The generator process: `python -m loadgen.worker JSON` (started by runner.LoadRunner).

Protocol with the parent, both over pipes:
- stdin: control, one JSON object a line: {"op": "level", "level": {...}}, {"op": "pause"},
  {"op": "resume"}, {"op": "stop"}. End of stdin (the parent went away) stops the run.
- stdout: frames of a 4-byte little-endian length and a pickle of (kind, payload):
  ("stats", LoadStats) five times a second, then ("final", LoadResult) or ("error", str).
Anything else the process prints goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import struct
import sys
import threading

from plumbing.process import raise_nofile_limit

from .driver import Driver
from .engine import resolve
from .levels import LoadError, LoadLevel


def _writer(fd: int):  # type: ignore[no-untyped-def]
    lock = threading.Lock()

    def publish(kind: str, payload: object) -> None:
        data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        frame = struct.pack("<I", len(data)) + data
        with lock:
            view = memoryview(frame)
            while view:
                try:
                    n = os.write(fd, view)
                except BrokenPipeError:
                    return  # the parent stopped listening; the run ends on stdin EOF
                view = view[n:]

    return publish


def _control(loop: asyncio.AbstractEventLoop, driver: Driver) -> None:
    """Read control lines from stdin (a thread); hand each to the loop."""

    def apply(msg: dict[str, object]) -> None:
        op = msg.get("op")
        if op == "level":
            driver.set_level(LoadLevel(**msg["level"]))  # type: ignore[arg-type]
        elif op == "pause":
            driver.pause()
        elif op == "resume":
            driver.resume()
        elif op == "stop":
            driver.stop()

    # os.read, not sys.stdin: a daemon thread blocked inside sys.stdin's buffered reader
    # holds its lock and delays the interpreter's exit by a second
    buf = b""
    while chunk := os.read(0, 65536):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            try:
                loop.call_soon_threadsafe(apply, msg)
            except RuntimeError:  # loop closed
                return
    try:
        loop.call_soon_threadsafe(driver.stop)
    except RuntimeError:
        pass


async def _main(args: dict[str, object], publish) -> None:  # type: ignore[no-untyped-def]
    target = resolve(str(args["url"]), allow_remote=bool(args.get("allow_remote")))
    level = LoadLevel(**args["level"])  # type: ignore[arg-type]
    driver = Driver(target, level, str(args["engine"]), publish)
    loop = asyncio.get_running_loop()
    threading.Thread(target=_control, args=(loop, driver), daemon=True).start()
    result = await driver.run()
    publish("final", result)


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    raise_nofile_limit()
    # frames go to the original stdout; stray prints go to stderr
    frames = os.dup(1)
    os.dup2(2, 1)
    publish = _writer(frames)
    use_uvloop = bool(args.get("uvloop", True))
    try:
        if use_uvloop:
            try:
                import uvloop  # optional; measured about 1.9x the request rate (docs/loadgen.md)
            except ImportError:
                use_uvloop = False
        if use_uvloop:
            uvloop.run(_main(args, publish))
        else:
            asyncio.run(_main(args, publish))
    except LoadError as e:
        publish("error", str(e))
        return 2
    except Exception as e:  # one line for the parent, the traceback on stderr
        import traceback

        traceback.print_exc()
        publish("error", f"load generator failed: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
