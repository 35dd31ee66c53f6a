"""The commands the README and docs/ show, read from their code blocks, and the driver that
runs a block of them bounded (tests/test_documented_commands.py says the rules).

`python tests/doccommands.py SPEC_JSON` is the driver: it runs inside a network namespace
of the test's making, so the ports a command names (8080, 8000, 9464) are free. For each
command of the block in turn, in one directory (a later line may read what an earlier one
wrote), it starts the server the command needs to find, runs the command the way its kind
allows (a pseudo-terminal and `q` for a TUI, SIGINT for a server, to the end for the rest),
and checks by pid that everything the command started is gone. It prints one JSON line per
command (what it cost) and exits 0, or 1 with the command and what went wrong on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# code blocks in these languages are not shell
NOT_SHELL = frozenset({"yaml", "yml", "promql", "python", "py", "json", "toml", "ini", "svg"})
# a word that stands for a value the reader fills in (a synopsis), except PID, which the
# driver fills in with the pid of the server it started
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")
FILLED = {"PID", "TID"}
FINITE_S = 60.0  # a command that runs to its end must end within this (its --duration capped)


@dataclass(frozen=True)
class Documented:
    page: str  # path from the repository's root
    line: int  # 1-based
    text: str  # the command as written, continuation lines joined, comment kept
    block: int = 0  # the line (1-based) where its code block starts

    @property
    def words(self) -> list[str]:
        """The command's words, as a POSIX shell splits them, the comment dropped."""
        return shlex.split(self.text, comments=True)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every page under docs/ (sub-folders too), whoever adds them."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _starts_command(line: str) -> bool:
    """`serverscope ...` or `make ...`, not a line of output such as `serverscope fix:
    nothing to fix` (every error line serverscope prints starts with its name and a colon)."""
    words = line.split(maxsplit=2)
    if not words or words[0] not in ("serverscope", "make"):
        return False
    return not (len(words) > 1 and words[1].endswith(":"))


def extract(page: str, text: str) -> list[Documented]:
    """Every `serverscope ...` and `make ...` line of a shell code block: fenced (no
    language, sh, bash, console, text...) or indented by four spaces. A `$ ` prompt is
    dropped; a line ending in `\\`, or followed by lines indented deeper (a synopsis wrapped
    over several lines), is joined with what follows."""
    found: list[Documented] = []
    fence: str | None = None  # the fence that opened the block we are in
    shell = False
    block = 0  # where the block we are in starts (an indented one: its first line)
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", raw)
        if fence is None and m:
            fence, shell = m.group(1), m.group(2).lower() not in NOT_SHELL
            block = i + 1
            i += 1
            continue
        if fence is not None and raw.strip().startswith(fence) and not raw.strip()[len(fence) :]:
            fence = None
            i += 1
            continue
        in_code = (fence is not None and shell) or (fence is None and raw.startswith("    "))
        if fence is None and in_code and not (i and lines[i - 1].startswith("    ")):
            block = i + 1
        body = raw.strip()
        if body.startswith("$ "):
            body = body[2:]
        if not (in_code and _starts_command(body)):
            i += 1
            continue
        start, indent = i, len(raw) - len(raw.lstrip())
        parts = [body]
        i += 1
        while i < len(lines):
            nxt = lines[i]
            if parts[-1].endswith("\\"):
                parts[-1] = parts[-1][:-1].rstrip()
            elif not (nxt.strip() and len(nxt) - len(nxt.lstrip()) > indent + 4):
                break
            if fence is not None and nxt.strip().startswith(fence):
                break
            parts.append(nxt.strip())
            i += 1
        found.append(Documented(page, start + 1, " ".join(parts), block))
    return found


SHELL_SYNTAX = re.compile(r"[$<>|&;`]")  # a variable, a redirection, a pipe, a job...


def is_script(d: Documented) -> bool:
    """A command written for a shell (`--pid "$PID"`, `> out.json`): its block runs whole.
    Not a usage line (`[--engine fast|httpx]`)."""
    return bool(SHELL_SYNTAX.search(d.text.split(" #", 1)[0])) and not is_synopsis(d.words)


def block_text(page: Path, start: int) -> str:
    """The code of the block that starts at line `start` (1-based) of `page`."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fence = lines[start - 1].strip()[:3]
    body = []
    for line in lines[start:]:
        if line.strip().startswith(fence):
            break
        body.append(line)
    return "\n".join(body) + "\n"


def documented(root: Path = ROOT) -> list[Documented]:
    out: list[Documented] = []
    for path in pages(root):
        out += extract(str(path.relative_to(root)), path.read_text(encoding="utf-8"))
    return out


def is_synopsis(words: list[str]) -> bool:
    """A usage line (`serverscope load URL [--preset P | ...]`), not a command to run."""
    return any(
        "[" in w or "|" in w or "..." in w or (PLACEHOLDER.match(w) and w not in FILLED)
        for w in words[1:]
    )


# -- the driver (runs inside the command's own network namespace) ---------------------------


class Failed(Exception):
    pass


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.update(int(c) for c in f.read().split())
        except FileNotFoundError:
            pass
    return out


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, read from /proc/PID/task/TID/children (psutil's
    children() reads every process on the host instead: ~20 ms a call on a busy one)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        new = _children(todo.pop()) - found
        found |= new
        todo.extend(new)
    return found


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the driver dies (a test timeout kills it)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _http(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one GET on 127.0.0.1:port, (0, b"") when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            s.sendall(request.encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


class Run:
    """One documented command, started in the driver's namespace, its pids tracked."""

    def __init__(self, argv: list[str], cwd: str, *, tty: bool, name: str = "command") -> None:
        self.seen: set[int] = set()
        self.output = b""
        self.status: int | None = None
        self.fd: int | None = None
        if tty:
            pid, fd = pty.fork()
            if pid == 0:  # the child: a 120x36 terminal, as the screenshots use
                try:
                    os.chdir(cwd)
                    os.environ.update(COLUMNS="120", LINES="36", TERM="xterm-256color")
                    _die_with_parent()
                    os.execv(argv[0], argv)
                finally:
                    os._exit(127)
            self.pid, self.fd, self.proc = pid, fd, None
        else:
            self.log = Path(cwd) / f".{name}.out"
            self.out = open(self.log, "wb")  # noqa: SIM115 (closed in close())
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self.out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
            self.pid = self.proc.pid
        self.cwd = cwd

    def poll(self) -> bool:
        """Drain the terminal, note new descendants; True once the command has exited."""
        if self.fd is not None:
            try:
                while select.select([self.fd], [], [], 0.02)[0]:
                    data = os.read(self.fd, 1 << 16)
                    if not data:
                        break
                    self.output += data
            except OSError:  # the child has gone, and its side of the terminal with it
                pass
        else:
            self.output = self.log.read_bytes()
        if self.status is None:
            self.seen |= _descendants(self.pid)
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def running(self) -> bool:
        if self.poll():
            raise Failed(f"it exited ({self.status}) before it had started:\n{self.tail()}")
        return True

    def until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        _wait(lambda: self.running() and cond(), timeout, what)

    def send(self, sig: signal.Signals) -> None:
        self.seen |= _descendants(self.pid)
        os.kill(self.pid, sig)

    def press(self, key: bytes) -> None:
        self.seen |= _descendants(self.pid)
        assert self.fd is not None
        os.write(self.fd, key)

    def exit_code(self, timeout: float) -> int:
        _wait(self.poll, timeout, "it to exit")
        assert self.status is not None
        return self.status

    def tail(self) -> str:
        text = re.sub(rb"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]", b"", self.output)
        return text.decode("utf-8", "replace")[-1500:]

    def close(self) -> None:
        if self.status is None:
            for pid in (self.pid, *self.seen):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        if self.fd is not None:
            os.close(self.fd)
        else:
            self.out.close()


def _drawn(run: Run) -> bool:
    """The TUI has drawn its screen: the alternate screen is up and a panel is on it."""
    return b"\x1b[?1049h" in run.output and b"scoreboard" in run.output


def _option(words: list[str], name: str) -> str | None:
    for i, w in enumerate(words):
        if w == name and i + 1 < len(words):
            return words[i + 1]
        if w.startswith(name + "="):
            return w.split("=", 1)[1]
    return None


def _port_of(hostport: str) -> int:
    return int(hostport.rsplit(":", 1)[1])


def _fixture(exe: list[str], words: list[str], port: int) -> list[str]:
    """The server a command expects on `port`: `load` hits a model's /work, so a model (the
    cheapest, single); `attach` and `stack` watch any server, so Python's own http.server
    (0.1 s of CPU to start against single's 0.65 s, and attach runs eight times)."""
    if words[1:2] == ["load"]:
        return [*exe, "serve", "single", "--port", str(port)]
    http = ["-m", "http.server", "--bind", "127.0.0.1", "--protocol", "HTTP/1.1", str(port)]
    return [sys.executable, *http]


def drive(exe: list[str], cwd: str, command: dict[str, object]) -> None:
    """Run one command as its regime says; raise Failed on anything wrong."""
    words = [str(w) for w in command["words"]]  # type: ignore[attr-defined]
    regime = str(command["regime"])
    fixture: Run | None = None
    port = command.get("fixture_port")
    try:
        if port:  # the server this command watches or loads, on the port it names
            fixture = Run(_fixture(exe, words, int(port)), cwd, tty=False, name="fixture")
            fixture.until(lambda: _http(int(port))[0] == 200, 60, f"a server on port {port}")
            pid = str(fixture.pid)  # its only thread's id is its pid too
            words = [pid if w in ("PID", "TID") else w for w in words]
        argv = words if regime == "script" else [*exe, *words[1:]]  # a script: sh -ec TEXT
        run = Run(argv, cwd, tty=regime in ("tui", "stream"))
        try:
            _drive(run, regime, words)
        finally:
            run.close()
        gone = run.seen | {run.pid}
        _wait(lambda: not any(_alive(p) for p in gone), 10, f"pids {sorted(gone)} to be gone")
    finally:
        if fixture is not None:
            fixture.send(signal.SIGINT)
            fixture.exit_code(20)
            fixture.close()


def _drive(run: Run, regime: str, words: list[str]) -> None:
    export = _option(words, "--export")
    if regime == "tui":
        run.until(lambda: _drawn(run), 60, "the TUI to draw its screen")
        if words[1:2] != ["attach"]:  # the lab and the demos start a server of their own
            run.until(lambda: bool(_descendants(run.pid)), 30, "the lab's server to start")
        if export:
            _metrics(run, _port_of(export))
        run.press(b"q")
        code = run.exit_code(20)
    elif regime in ("finite", "script"):
        try:
            code = run.exit_code(FINITE_S)
        except Failed:
            raise Failed(
                f"still running after {FINITE_S:.0f} s: if it runs until stopped, give its kind "
                f"a way to stop in tests/test_documented_commands.py:regime\n{run.tail()}"
            ) from None
    else:
        if regime == "web":
            port = int(_option(words, "--web-port") or 8000)
            run.until(lambda: b"ws://" in _http(port)[1], 60, f"the page on port {port}")
            asyncio.run(_browse(run, port))  # SIGINT with the page open, as a speaker's ^C
            code = run.exit_code(20)
            if code != 0:
                raise Failed(f"exit status {code}:\n{run.tail()}")
            return
        elif regime == "serve":
            port = int(_option(words, "--port") or 0)
            run.until(lambda: _http(port)[0] == 200, 60, f"GET / answered on port {port}")
        elif export:  # an agent: no screen, only the metrics
            _metrics(run, _port_of(export))
        else:  # a stream on stdout (attach --table, --json)
            run.until(lambda: run.output.count(b"\n") >= 3, 60, "its first lines")
        run.send(signal.SIGINT)
        code = run.exit_code(20)
    if code != 0:
        raise Failed(f"exit status {code}:\n{run.tail()}")


async def _browse(run: Run, port: int) -> None:
    """What the page's script does: open its websocket (Origin: the page's own), then read
    the lab's screen until it is drawn and the lab has started its server (a process two
    levels below the web server); then SIGINT the web server with the page still open and
    wait for the websocket to close."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/ws?width=120&height=36"
    origin = {"Origin": f"http://127.0.0.1:{port}"}
    screen = b""

    def lab_up() -> bool:
        return b"scoreboard" in screen and any(_children(lab) for lab in _children(run.pid))

    def failed(what: str) -> Failed:
        return Failed(
            f"{what}; its screen: {screen[-600:]!r}\nthe web server's output:\n{run.tail()}"
        )

    labs: set[int] = set()
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=origin) as ws:
        deadline = time.monotonic() + 60
        while run.running() and not lab_up():
            labs |= _children(run.pid)
            if labs and not any(_alive(p) for p in labs):
                raise failed("the page's lab exited before it had drawn its screen")
            if time.monotonic() > deadline:
                raise failed("timed out after 60 s waiting for the page's lab")
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.5)
            except TimeoutError:
                continue
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                screen += msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            else:
                raise failed(f"the page's websocket closed ({msg.type.name})")
        run.send(signal.SIGINT)
        end = time.monotonic() + 10
        while not ws.closed and time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.receive(), 0.5)


def _metrics(run: Run, port: int) -> None:
    def scraped() -> bool:
        status, body = _http(port, "/metrics")
        return status == 200 and b"serverscope_" in body

    run.until(scraped, 60, f"Prometheus metrics on port {port}")


def main() -> int:
    """Run every command of the spec's block in turn; stop at the first that fails."""
    import resource

    spec = json.loads(sys.argv[1])
    exe, cwd = [str(w) for w in spec["exe"]], str(spec["cwd"])
    # a script block finds `serverscope` as a reader's shell does: the one under test first
    os.environ["PATH"] = f"{Path(exe[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for command in spec["commands"]:
        t0 = time.monotonic()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            drive(exe, cwd, command)
        except Failed as e:
            print(f"{command['where']}: `{' '.join(command['words'])}`: {e}", file=sys.stderr)
            return 1
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        took = {
            "where": command["where"],
            "wall_s": round(time.monotonic() - t0, 2),
            "cpu_s": round(cpu.ru_utime + cpu.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
        }
        print(json.dumps(took), flush=True)  # what running it cost, for the test's report
    return 0


if __name__ == "__main__":
    sys.exit(main())
