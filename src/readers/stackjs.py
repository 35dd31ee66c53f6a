"""Node stacks: the JavaScript stack of a Node process's main thread, read through its
inspector. SIGUSR1 makes Node open the inspector (on 127.0.0.1:9229 unless the process set
`process.debugPort`; the Node originals set 0, a port the kernel picks); the port it opened
is the new loopback listener the process holds (read from /proc, whatever its stderr).
Then, over the inspector's WebSocket: Debugger.enable, Debugger.pause, read the paused
call frames, Debugger.resume, Debugger.disable, and the inspector is closed again.

An idle event loop runs no JavaScript, so a pause alone would wait for the next event. Once
the pause is answered, a thread running JavaScript breaks at its next step; when none has
come 50 ms later, a probe expression is evaluated: the thread pauses in the probe if it
was idle, which is the evidence that no JavaScript was running (it waits in the event
loop); a thread busy in a native call breaks in the JavaScript that runs after it.

aiohttp's WebSocket client, already installed with textual-serve: the standard library has
none. Its session ignores proxy variables (trust_env=False): the inspector is on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from values.stackvalues import CaptureFailed, Frame, StackCapture, ThreadStack

from .procfs import catches, read_tcp_table, socket_inodes

DEFAULT_PORT = 9229
OPEN_WAIT_S = 3.0  # for the inspector's port to appear after SIGUSR1
# After the pause is answered, running JavaScript breaks at once (V8 interrupts it); a
# thread still silent after this long is idle in the event loop, or in a native call,
# after which it breaks in the JavaScript that runs next
GRACE_S = 0.05
PROBE_URL = "serverscope-stack-probe"
PROBE = f"0\n//# sourceURL={PROBE_URL}"
# Closed two loop turns later: SIGUSR1 also queues a start of the inspector for the event
# loop, which a busy thread runs only after its JavaScript; closed before that, the
# inspector opened again (seen with Node 20: one poll phase must come between)
CLOSE = (
    "typeof process._debugEnd === 'function' && "
    "setImmediate(() => setImmediate(() => process._debugEnd()))"
)
# An inspector opened again by SIGUSR1 soon after it closed crashed Node 20.20 with SIGSEGV
# (the worker died: 6 of 8 sequences of an idle capture then captures every 0.1 s); with
# a second between the close and the next SIGUSR1, 0 of 8 (tests/test_stacks.py's Node test)
REOPEN_GAP_S = 1.0
CLOSE_WAIT_S = 1.0
T = TypeVar("T")


def loopback_listeners(pid: int) -> dict[int, int]:
    """{inode: port} of the loopback TCP listeners process `pid` holds."""
    mine = set(socket_inodes(pid))
    return {
        ln.inode: ln.port
        for ln in read_tcp_table().listens
        if ln.inode in mine and ln.address in ("127.0.0.1", "::1")
    }


def _holder_of(port: int) -> int | None:
    inodes = {ln.inode for ln in read_tcp_table().listens if ln.port == port}
    for name in os.listdir("/proc"):
        if name.isdigit() and inodes & set(socket_inodes(int(name))):
            return int(name)
    return None


# pid -> (inode, port) of an inspector a capture opened: a thread that never leaves its
# JavaScript (the stuck worker one reads twice) has not closed it yet, and a second SIGUSR1
# opens nothing new. A pid reused since cannot hold the same socket inode.
_opened: dict[int, tuple[int, int]] = {}
_opened_lock = threading.Lock()


def open_inspector(pid: int, deadline: float) -> int:
    """Send SIGUSR1 and return the port the inspector opened (or still has open)."""
    before = loopback_listeners(pid)
    with _opened_lock:
        known = _opened.get(pid)
    if known is not None and before.get(known[0]) == known[1]:
        return known[1]
    if known is not None:  # ours, closed since: not opened again at once (REOPEN_GAP_S)
        if deadline - time.monotonic() < REOPEN_GAP_S + 0.5:
            raise CaptureFailed(
                f"pid {pid}'s inspector closed a moment ago: Node may crash if it opens again "
                f"within {REOPEN_GAP_S:g} s, so it was not asked to; capture again"
            )
        time.sleep(REOPEN_GAP_S)
        with _opened_lock:
            _opened.pop(pid, None)
    caught = catches(pid, signal.SIGUSR1)
    if caught is None:
        raise CaptureFailed(f"no process {pid}")
    if not caught:  # SIGUSR1's default action ends the process: never sent then
        raise CaptureFailed(
            f"pid {pid} does not handle SIGUSR1 yet (a Node process still starting, or "
            "started with --disable-sigusr1): not sent, it would end the process"
        )
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise CaptureFailed(f"no process {pid}") from None
    except PermissionError:
        raise CaptureFailed(f"not permitted to signal pid {pid}: run as its user or root") from None
    until = min(deadline, time.monotonic() + OPEN_WAIT_S)
    while time.monotonic() < until:
        new = {i: p for i, p in loopback_listeners(pid).items() if i not in before}
        if new:
            inode, port = min(new.items(), key=lambda ip: ip[1])
            with _opened_lock:
                _opened[pid] = (inode, port)
            return port
        time.sleep(0.02)
    holder = _holder_of(DEFAULT_PORT)
    if holder is not None and holder != pid:
        raise CaptureFailed(
            f"Node's inspector could not open 127.0.0.1:{DEFAULT_PORT}: pid {holder} holds it "
            "(a Node process opens that port on SIGUSR1 unless it sets process.debugPort)"
        )
    raise CaptureFailed(
        f"pid {pid} opened no inspector port within {OPEN_WAIT_S:g} s of SIGUSR1 "
        "(started with --disable-sigusr1, or its inspector is already open?)"
    )


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end from any thread, even one whose event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_wrap(make))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_wrap(make))
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, name="stack-inspector", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _wrap(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


class _Session:
    """One inspector WebSocket: numbered calls, events kept as they come."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.replies: dict[int, dict[str, Any]] = {}
        self.scripts: dict[str, str] = {}  # scriptId -> url
        self.paused: dict[str, Any] | None = None

    async def send(self, method: str, **params: Any) -> int:
        self.next_id += 1
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        return self.next_id

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            msg = await self.ws.receive()
            if msg.type != 1:  # aiohttp.WSMsgType.TEXT
                raise CaptureFailed(f"the inspector closed its connection ({msg.type!r})")
            data = json.loads(msg.data)
            if "id" in data:
                self.replies[data["id"]] = data
            elif data.get("method") == "Debugger.scriptParsed":
                p = data["params"]
                self.scripts[p["scriptId"]] = p.get("url") or ""
            elif data.get("method") == "Debugger.paused":
                self.paused = data["params"]

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = await self.send(method, **params)
        await self.until(lambda: n in self.replies)
        return self.replies[n]


def _frames(session: _Session, call_frames: list[dict[str, Any]]) -> tuple[Frame, ...]:
    out = []
    for f in call_frames:
        url = session.scripts.get(f["location"]["scriptId"], "")
        path = url.removeprefix("file://")
        out.append(
            Frame(
                f.get("functionName") or "(anonymous)",
                file=path or None,
                line=f["location"]["lineNumber"] + 1,
                module=os.path.basename(path) if path.startswith("/") else (url or None),
            )
        )
    return tuple(out)


async def _read_stack(port: int, pid: int) -> tuple[ThreadStack, float]:
    import aiohttp

    async with aiohttp.ClientSession(trust_env=False) as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = json.loads(await r.text())
        url = next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "node"), None)
        if url is None:
            raise CaptureFailed(f"the inspector on port {port} lists no Node target")
        async with http.ws_connect(url, max_msg_size=64 * 1024 * 1024) as ws:
            s = _Session(ws)
            try:
                await s.call("Debugger.enable")
                t0 = time.monotonic()
                await s.call("Debugger.pause")  # answered: JavaScript breaks at its next step
                probe = None
                try:
                    await asyncio.wait_for(s.until(lambda: s.paused is not None), GRACE_S)
                except TimeoutError:  # no JavaScript ran since: evaluate the probe
                    probe = await s.send("Runtime.evaluate", expression=PROBE)
                await s.until(lambda: s.paused is not None)
                assert s.paused is not None
                frames = _frames(s, s.paused.get("callFrames") or [])
                await s.call("Debugger.resume")
                stopped = time.monotonic() - t0
                if probe is not None:
                    await s.until(lambda: probe in s.replies)
            finally:
                if not ws.closed:
                    await s.call("Debugger.disable")
                    await s.call("Runtime.evaluate", expression=CLOSE)
                    await _ended(ws)
    name = "main JavaScript thread"
    if frames and frames[0].module == PROBE_URL:
        idle = "idle: waiting in the event loop, no JavaScript running"
        return ThreadStack(pid, name, idle, ()), stopped
    return ThreadStack(pid, name, "running JavaScript", frames), stopped


async def _ended(ws: Any) -> None:
    """Wait (at most CLOSE_WAIT_S) for Node to end the inspector CLOSE ended, its side
    closing the connection: left to close ours, an idle worker crashed Node 20.20 with
    SIGSEGV when a request came in at once (1-3 of 8 sequences of an idle capture then a
    request); a thread busy in its JavaScript ends it only after, past the wait."""
    try:
        async with asyncio.timeout(CLOSE_WAIT_S):
            while (await ws.receive()).type == 1:  # TEXT: events still coming
                pass
    except TimeoutError:
        pass


def javascript(base: StackCapture, deadline: float) -> StackCapture:
    port = open_inspector(base.pid, deadline)
    left = deadline - time.monotonic()

    async def bounded() -> tuple[ThreadStack, float]:
        return await asyncio.wait_for(_read_stack(port, base.pid), max(0.1, left))

    try:
        thread, stopped = run_async(bounded)
    except TimeoutError:
        raise CaptureFailed(f"the inspector on port {port} did not answer in time") from None
    except OSError as e:
        raise CaptureFailed(f"the inspector on port {port}: {e}") from None
    return replace(
        base,
        method=f"Node inspector (SIGUSR1, 127.0.0.1:{port})",
        threads=(thread,),
        stopped_s=stopped,
        stopped_how="the JavaScript thread's pause, from Debugger.pause sent to resume answered",
        notes=("only the main JavaScript thread (worker_threads are not read)",),
    )
