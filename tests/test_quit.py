"""Leaving leaves nothing: q in the real TUI under a heavy load, and `run`/`compare` cut
short by SIGINT or SIGTERM, with every process they started checked gone by pid.

How fast q is (issue 18: <= 0.5 s) is measured by bench/bench_quit.py, never here; these
tests check what the speed must not cost: no process left, the terminal given back, and
the stop signals reaching every process at once rather than through a drain or a root."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from conftest import assert_all_gone, wait_until
from lab.session import Session
from loadgen.levels import PRESETS
from originals.registry import spec as original_spec
from plumbing.process import pid_alive
from servers.config import ServerConfig

ROOT = Path(__file__).resolve().parents[1]
EXE = ROOT / ".venv" / "bin" / "serverscope"
HEAVY = "keepalive-idle"  # 300 keep-alive clients: prefork starves, its requests hang
LEAVE_ALT_SCREEN = b"\x1b[?1049l"  # Textual's last words: the terminal is given back


def descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def load_generator(pids: set[int]) -> psutil.Process | None:
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if "loadgen.worker" in " ".join(proc.cmdline()):
                return proc
        except psutil.NoSuchProcess:
            continue
    return None


def clients_connected(pids: set[int], at_least: int) -> bool:
    gen = load_generator(pids)
    if gen is None:
        return False
    try:
        return len(gen.net_connections(kind="tcp")) >= at_least
    except psutil.NoSuchProcess:
        return False


def needs_original(name: str) -> None:
    t = original_spec(name).toolchain
    if not t.present:
        pytest.skip(f"{name} needs {t.command}: install the Debian package {t.package}")


# -- q in the real TUI ----------------------------------------------------------------------


class Terminal:
    """The real `serverscope` in a 120x36 pseudo-terminal, its output drained."""

    def __init__(self, args: list[str]) -> None:
        if not EXE.exists():
            pytest.skip("no .venv/bin/serverscope (make setup)")
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update(COLUMNS="120", LINES="36")
            os.execv(str(EXE), [str(EXE), *args])
        self.pid, self.fd = pid, fd
        self.output = b""
        self.status: int | None = None

    def read(self, seconds: float = 0.05) -> None:
        try:
            if select.select([self.fd], [], [], seconds)[0]:
                self.output += os.read(self.fd, 1 << 16)
        except OSError:  # the child has gone and its side of the pty with it
            time.sleep(seconds)

    def exited(self) -> bool:
        self.read(0.02)
        if self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
                self.read_rest()
        return self.status is not None

    def read_rest(self) -> None:
        """What the child wrote before it exited (then the pty reads EIO)."""
        try:
            while select.select([self.fd], [], [], 0.5)[0]:
                data = os.read(self.fd, 1 << 16)
                if not data:
                    break
                self.output += data
        except OSError:
            pass

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@contextmanager
def lab(args: list[str]) -> Iterator[Terminal]:
    term = Terminal(args)
    try:
        yield term
    finally:
        term.close()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["prefork", "apache:prefork"])
def test_quitting_under_300_keepalive_clients_leaves_no_process(model: str) -> None:
    """The 4 s case of issue 18: prefork (and Apache's) starved by 300 idle keep-alive
    clients, requests hanging. q must still take every process down, and give the
    terminal back before the process leaves without its interpreter teardown."""
    if ":" in model:
        needs_original(model)
    with lab(["--model", model, "--load", HEAVY, "--duration", "60"]) as term:
        seen: set[int] = set()

        def heavy() -> bool:
            term.read()
            seen.update(descendants(term.pid))
            return b"running" in term.output and clients_connected(seen, 200)

        wait_until(heavy, 45, f"{model} live with 200 of the 300 clients connected")
        seen |= descendants(term.pid)
        assert len(seen) >= 3, seen  # at least: root (or watchdog), a worker, the load
        shown = len(term.output)
        os.write(term.fd, b"q")
        wait_until(term.exited, 20, "serverscope to exit after q")
        assert term.status == 0, term.output[-500:]
        assert LEAVE_ALT_SCREEN in term.output[shown:], "the terminal was not given back"
        assert_all_gone(sorted(seen), timeout=10)


# -- the session's stop -----------------------------------------------------------------------


def test_closing_a_session_kills_its_load_at_once_rather_than_draining_it() -> None:
    """A closed session's load result is thrown away: its generator is SIGKILLed, not
    given its 2 s drain for requests a starved server holds (single serves one keep-alive
    client at a time; the other 49 wait in the queue)."""
    level = PRESETS[HEAVY].with_(clients=50, ramp=0, duration=60)
    session = Session(ServerConfig(model="single"), level)
    session.start()
    try:
        runner = session.runner
        assert runner is not None and runner.child is not None
        pids = {runner.child.pid, *session.server.pids()}  # type: ignore[union-attr]
        wait_until(lambda: clients_connected(pids, 20), 20, "20 clients connected")
        child = runner.child
    finally:
        session.close()
    assert child.returncode == -signal.SIGKILL
    assert_all_gone(sorted(pids))


def test_begin_stop_reaches_every_worker_even_while_the_root_cannot_run(start_server) -> None:  # type: ignore[no-untyped-def]
    """The stop signal goes to the whole process group: workers die at once, not when
    their root, busy or descheduled, gets round to forwarding it (here it is stopped)."""
    sup = start_server("many_accepts", workers=3)
    workers = sup.worker_pids()
    assert len(workers) == 3
    os.kill(sup.root_pid, signal.SIGSTOP)
    try:
        sup.begin_stop()
        wait_until(lambda: not any(pid_alive(p) for p in workers), 10, "the workers to die")
    finally:
        os.kill(sup.root_pid, signal.SIGCONT)
    sup.stop()
    assert_all_gone([sup.root_pid, *workers])


def test_an_original_stops_its_whole_tree() -> None:
    needs_original("c:proc_spawn")
    level = PRESETS["burst"].with_(clients=20, duration=60)
    session = Session(ServerConfig(model="c:proc_spawn", workers=4), level)
    session.start()
    try:
        server, runner = session.server, session.runner
        assert server is not None and runner is not None and runner.pid is not None
        watchdog = server.watchdog_pid  # type: ignore[attr-defined]
        pids = [watchdog, *server.pids(), runner.pid]
        assert len(pids) >= 7  # watchdog, root, 4 workers, the load generator
    finally:
        session.close()
    assert_all_gone(pids)


# -- run and compare cut short by a signal ----------------------------------------------------


def _interrupt(cmd: list[str], sig: signal.Signals, waiting_for: str) -> tuple[str, set[int]]:
    """Start `cmd`, wait for its load to be running with 100 clients connected, send
    `sig`; returns its stdout and every descendant pid seen."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "serverscope", *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: set[int] = set()
    try:

        def loaded() -> bool:
            seen.update(descendants(proc.pid))
            return proc.poll() is not None or clients_connected(seen, 100)

        wait_until(loaded, 45, waiting_for)
        assert proc.poll() is None, proc.communicate()[0]
        seen |= descendants(proc.pid)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
        return out, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in seen:  # leave nothing behind even when an assertion failed
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_cut_short_by_a_signal_leaves_no_process(sig: signal.Signals) -> None:
    cmd = ["run", "--model", "prefork", "--load", HEAVY, "--duration", "60"]
    out, seen = _interrupt(cmd, sig, "run: the load running with 100 clients")
    assert "interrupted" in out, out[-1000:]
    assert len(seen) >= 3, seen  # root, workers, the load generator
    assert_all_gone(sorted(seen), timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_compare_cut_short_by_a_signal_leaves_no_process(
    sig: signal.Signals, tmp_path: Path
) -> None:
    svg = tmp_path / "chart.svg"
    cmd = ["compare", "--models", "prefork,single", "--load", HEAVY, "--duration", "60"]
    out, seen = _interrupt([*cmd, "--svg", str(svg)], sig, "compare: prefork under load")
    assert "[2/2]" not in out, "the second model started after the signal"
    assert len(seen) >= 3, seen
    assert_all_gone(sorted(seen), timeout=10)
