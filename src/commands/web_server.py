"""The web server of `serverscope web`: textual-serve's `Server`, with the rules a lab needs.

A lab is a running server and a load generator (about 110 MiB and a few processes each),
so the page's websocket, which starts one, is guarded here:

- **Only the page's own origin.** Any page the user has open in the browser may open a
  websocket to 127.0.0.1 (a browser does not apply the same-origin policy to websockets;
  it sends `Origin` and leaves the check to the server): ten from `http://evil.example`
  got ten labs and their screens. A websocket whose `Origin` is not
  `http://127.0.0.1:PORT` or `http://localhost:PORT` is 403, before any lab starts; so is
  a request whose `Host` is another name (DNS rebinding: a name that resolves to 127.0.0.1).
- **At most `max_labs` labs at once.** The next page gets a page saying so (503), and a
  websocket past the limit gets that line on its terminal, then a close.
- **SIGINT and SIGTERM end it within a second, every lab gone.** textual-serve asks each
  lab's app to quit and then waits for aiohttp's graceful shutdown (16-23 s with a page open);
  here every lab is sent SIGTERM (the TUI quits on it as on `q`), what is left after
  `LAB_GRACE` is killed (each lab's own processes die with it: PR_SET_PDEATHSIG), and the
  process exits at `EXIT_DEADLINE` whatever aiohttp still waits for.

Hooks are textual-serve's own methods, overridden in a subclass: `handle_index` and
`handle_websocket` (the route handlers, bound to the instance) and `request_exit` (what
its signal handlers call). No library code is patched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from html import escape

import psutil
from aiohttp import web
from textual_serve.server import Server

from plumbing.process import pid_alive

LAB_GRACE = 0.4  # s a lab has to quit on SIGTERM (one alone took 0.14-0.67 s under load, so
# most are killed), then again for what a SIGKILL leaves (it dies with it: PR_SET_PDEATHSIG)
EXIT_DEADLINE = 0.9  # s from the signal to this process's exit, whatever is left
CLOSE_TRY_AGAIN = 1013  # websocket close code: try again later


class LabServer(Server):
    def __init__(self, command: str, *, host: str, port: int, max_labs: int) -> None:
        super().__init__(command, host=host, port=port, title="serverscope")
        self.max_labs = max_labs
        self.labs = 0  # websockets with a lab, now
        self._stopping: asyncio.Task[None] | None = None
        netlocs = {f"{host}:{port}", f"localhost:{port}"}
        if port == 80:
            netlocs |= {host, "localhost"}
        self.hosts = frozenset(netlocs)
        self.origins = frozenset(f"http://{n}" for n in netlocs)

    # -- the checks ---------------------------------------------------------------------
    def _foreign(self, request: web.Request, websocket: bool) -> str | None:
        """Why `request` is not from the page this server serves, or None."""
        host = request.headers.get("Host", "").lower()
        if host not in self.hosts:
            return f"Host {host!r} is not this server's ({' or '.join(sorted(self.hosts))})"
        origin = request.headers.get("Origin")
        if websocket and (origin is None or origin.lower() not in self.origins):
            return f"Origin {origin!r} is not this server's page"
        return None

    def full_text(self) -> str:
        return (
            f"serverscope web: {self.labs} labs are open, as many as --max-labs "
            f"{self.max_labs} allows (each runs its own server and load). "
            "Close one of their pages, then reload this one."
        )

    async def handle_index(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        why = self._foreign(request, websocket=False)
        if why is not None:
            return web.Response(status=403, text=f"serverscope web: {why}\n")
        if self.labs >= self.max_labs:
            page = f"<!DOCTYPE html><title>serverscope</title><p>{escape(self.full_text())}</p>"
            return web.Response(status=503, text=page, content_type="text/html")
        return await super().handle_index(request)  # type: ignore[misc]

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        why = self._foreign(request, websocket=True)
        if why is not None:
            raise web.HTTPForbidden(text=f"serverscope web: {why}\n")
        if self.labs >= self.max_labs:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_bytes(f"\r\n  {self.full_text()}\r\n".encode())
            await ws.close(code=CLOSE_TRY_AGAIN, message=b"too many labs")
            return ws
        self.labs += 1  # counted before the first await: no two pages race past the limit
        try:
            return await super().handle_websocket(request)
        finally:
            self.labs -= 1

    # -- the stop -----------------------------------------------------------------------
    def request_exit(self) -> None:
        """SIGINT/SIGTERM (textual-serve's signal handlers call this): stop every lab, then
        leave by textual-serve's GracefulExit; os._exit at EXIT_DEADLINE should aiohttp's
        shutdown still wait on a websocket."""
        if self._stopping is not None:
            return  # a second signal: the stop is under way
        deadline = threading.Timer(EXIT_DEADLINE, os._exit, (0,))
        deadline.daemon = True
        deadline.start()
        self._stopping = asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        # async: the loop goes on reading the labs' output meanwhile, which a lab that quits
        # still writes (its last frames): a lab blocked on a full pipe cannot quit
        await stop_labs(os.getpid(), LAB_GRACE)
        super().request_exit()


async def stop_labs(parent: int, grace: float) -> None:
    """SIGTERM each lab (a child of `parent`), SIGKILL those left after `grace` s; return
    once every process under `parent` is gone (or `grace` more seconds have passed)."""
    try:
        labs = psutil.Process(parent).children()
        tree = psutil.Process(parent).children(recursive=True)
    except psutil.Error:
        return
    for p in labs:
        _signal(p, signal.SIGTERM)
    await _wait_gone([p.pid for p in labs], grace)
    for p in labs:
        _signal(p, signal.SIGKILL)
    await _wait_gone([p.pid for p in tree], grace)


def _signal(p: psutil.Process, sig: signal.Signals) -> None:
    try:
        p.send_signal(sig)  # psutil checks the pid is still this process
    except psutil.Error:
        pass


async def _wait_gone(pids: list[int], timeout: float) -> None:
    end = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < end:
        await asyncio.sleep(0.01)
