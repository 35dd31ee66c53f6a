"""plumbing.child, the one launcher, and its three users (the supervisor, the originals'
watchdog, the load runner): stderr kept to its latest mebibyte, one death message, the
whole process group stopped, nothing left when the parent is SIGKILLed. Ground truth is by
pid (/proc)."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import assert_all_gone, wait_until
from loadgen.levels import LoadLevel
from loadgen.runner import LoadRunner
from originals.launch import Original
from originals.registry import spec as original_spec
from plumbing.child import MESSAGE_WIDTH, STDERR_CAP, Child
from plumbing.process import pid_alive
from servers.config import ServerConfig
from servers.supervisor import Supervisor

MIB = 1024 * 1024
FLOOD = 10 * MIB
LAST_WORDS = "the flood's last line"


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# a child that starts a grandchild ignoring SIGTERM, says its pid and waits
PARENT_OF_ONE = """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kid = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print(flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    kid.stdout.readline()  # its SIGTERM is ignored from here on
    print(kid.pid, flush=True)
    time.sleep({sleep})
"""


def family(sleep: float = 60) -> tuple[Child, int]:
    child = Child(python(PARENT_OF_ONE.format(sleep=sleep)), name="parent", stdout=subprocess.PIPE)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    return child, grandchild


# -- stderr: the latest mebibyte, whole lines, the last words ----------------------------------


def test_a_child_flooding_stderr_keeps_its_latest_mebibyte_in_whole_lines() -> None:
    child = Child(
        python(f"""
            import sys
            lines = b"".join(b"%08d " % i + b"x" * 90 + b"\\n" for i in range({FLOOD // 100}))
            sys.stderr.buffer.write(lines + b"{LAST_WORDS}\\n")
            sys.exit(3)
        """),
        name="flood",
    )
    try:
        assert child.wait(30)
        assert child.death_message() == f"flood exited (code 3): {LAST_WORDS}"
        assert child.tail is not None
        kept = child.tail.kept()
        assert child.tail.seen == FLOOD // 100 * 100 + len(LAST_WORDS) + 1
        assert STDERR_CAP - 2 * 65536 <= len(kept) <= STDERR_CAP  # the latest MiB, not less
        lines = kept.decode().splitlines()
        assert lines[-1] == LAST_WORDS
        numbers = [int(ln[:8]) for ln in lines[:-1]]
        assert all(re.fullmatch(r"\d{8} x{90}", ln) for ln in lines[:-1])  # whole lines
        assert numbers == list(range(numbers[0], FLOOD // 100))  # the latest, none missing
    finally:
        child.stop()
        child.close()


# -- the death message ----------------------------------------------------------------------


def test_the_death_message_is_one_line_saying_how_it_died_and_its_last_words() -> None:
    raised = Child(python("raise ValueError('bad knob')"), name="root")
    killed = Child(["sleep", "60"], name="sleeper")
    long = Child(python("import sys; sys.stderr.write('x' * 5000 + '\\n'); sys.exit(2)"), name="l")
    traced = Child(
        python("""
            import sys
            print("cannot listen on 127.0.0.1:1: in use", file=sys.stderr)
            print("  at node:net:1234", file=sys.stderr)
            sys.exit(1)
        """),
        name="node",
    )
    try:
        os.kill(killed.pid, signal.SIGKILL)
        for c in (raised, killed, long, traced):
            assert c.wait(30)
        assert raised.death_message("exited at start") == (
            "root exited at start (code 1): ValueError: bad knob"
        )
        assert killed.death_message() == "sleeper exited (killed by SIGKILL)"
        msg = long.death_message()
        assert msg.startswith("l exited (code 2): xxx") and "\n" not in msg
        assert len(msg) <= len("l exited (code 2): ") + MESSAGE_WIDTH
        assert traced.death_message() == "node exited (code 1): at node:net:1234"
        picked = traced.death_message(prefer=lambda ln: ln.startswith("cannot "))
        assert picked == "node exited (code 1): cannot listen on 127.0.0.1:1: in use"
        assert raised.death_message(reason="from the scoreboard").endswith(
            "(code 1): from the scoreboard"
        )
    finally:
        for c in (raised, killed, long, traced):
            c.stop()
            c.close()


# -- the whole group ------------------------------------------------------------------------


def test_stop_takes_the_whole_group_after_its_grace_even_what_ignores_sigterm() -> None:
    child, grandchild = family()
    try:
        t0 = time.monotonic()
        code = child.stop(grace=0.3)
        took = time.monotonic() - t0
        assert code == -signal.SIGKILL  # it ignored SIGTERM: SIGKILL after the grace
        assert took >= 0.3
        assert_all_gone([child.pid, grandchild])
    finally:
        kill_all([child.pid, grandchild])
        child.close()


def test_kill_takes_the_whole_group_at_once_from_another_thread() -> None:
    """The quitting path: signals go out from whatever thread quits, reaping comes later."""
    child, grandchild = family()
    try:
        killer = threading.Thread(target=child.kill)
        killer.start()
        killer.join(5)
        assert_all_gone([child.pid, grandchild])
        assert child.stop() == -signal.SIGKILL
    finally:
        kill_all([child.pid, grandchild])
        child.close()


def test_the_group_goes_when_its_leader_exits_by_itself() -> None:
    child, grandchild = family(sleep=0)
    try:
        assert child.wait(30)
        assert child.returncode == 0
        assert_all_gone([grandchild])
    finally:
        kill_all([grandchild])
        child.stop()
        child.close()


# -- dying with the parent -----------------------------------------------------------------

STARTER = """
    import sys, time
    from plumbing.child import Child
    py = Child([sys.executable, "-c", "import time; time.sleep(60)"], name="py")
    other = Child(["sleep", "60"], name="sleep")  # not Python: nothing of ours runs in it
    free = Child(["sleep", "60"], name="free", die_with_parent=False)
    print(py.pid, other.pid, free.pid, flush=True)
    time.sleep(60)
"""


def test_a_sigkilled_parent_leaves_no_child_python_or_not() -> None:
    parent = subprocess.Popen(python(STARTER), stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        py, other, free = pids
        assert all(pid_alive(p) for p in pids)
        parent.kill()
        parent.wait(10)
        assert_all_gone([py, other])
        assert pid_alive(free)  # the control: without the launcher's PDEATHSIG it stays
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        kill_all(pids)


# -- the three users ------------------------------------------------------------------------


@pytest.fixture
def flooding_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """sys.executable becomes a script that writes 10 MiB to stderr, its last words, starts
    a grandchild `sleep 60` (its pid on stderr), then execs the real Python: every child a
    user starts as `sys.executable -m ...` floods its stderr and has a grandchild."""
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        f"yes 'a line of stderr, one of many, all alike: {'.' * 17}' | head -c {FLOOD} >&2\n"
        f'echo "{LAST_WORDS}" >&2\n'
        "sleep 60 </dev/null >/dev/null 2>&1 &\n"
        'echo "grandchild $!" >&2\n'
        f'exec {sys.executable} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sys, "executable", str(script))
    yield


def grandchild_of(child: Child) -> int:
    assert child.tail is not None
    wait_until(lambda: child.tail is not None and child.tail.seen > FLOOD, 30, "the flood")

    def said() -> list[str]:
        return [ln for ln in child.stderr_lines(settle=0) if ln.startswith("grandchild ")]

    wait_until(lambda: bool(said()), 10, "the grandchild's pid")
    return int(said()[-1].split()[1])


def assert_flood_capped(child: Child) -> None:
    assert child.tail is not None
    kept = child.tail.kept()
    assert child.tail.seen > FLOOD
    assert len(kept) <= STDERR_CAP
    assert LAST_WORDS in kept.decode() and "grandchild" in kept.decode()


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.usefixtures("flooding_python")
def test_the_supervisor_keeps_a_flood_to_its_cap_and_stops_the_whole_group() -> None:
    sup = Supervisor(ServerConfig(model="single"))
    sup.start()
    assert sup.child is not None
    grandchild = grandchild_of(sup.child)
    try:
        assert_flood_capped(sup.child)
        sup.stop()
        assert_all_gone([sup.root_pid, grandchild])
    finally:
        sup.stop()
        kill_all([grandchild])


@pytest.mark.usefixtures("flooding_python")
def test_an_original_keeps_a_flood_to_its_cap_and_stops_the_whole_group() -> None:
    t = original_spec("c:single").toolchain
    if not t.present:
        pytest.skip(f"c:single needs {t.command}: install the Debian package {t.package}")
    srv = Original(ServerConfig(model="c:single"))
    srv.start()
    assert srv.watchdog is not None
    grandchild = grandchild_of(srv.watchdog)
    pids = [srv.watchdog.pid, *srv.pids()]
    try:
        assert_flood_capped(srv.watchdog)
        srv.stop()
        assert_all_gone([*pids, grandchild])
    finally:
        srv.stop()
        kill_all([*pids, grandchild])


@pytest.mark.usefixtures("flooding_python")
def test_the_load_runner_keeps_a_flood_to_its_cap_and_stops_the_whole_group() -> None:
    url = f"http://127.0.0.1:{free_closed_port()}/"
    runner = LoadRunner(url, LoadLevel(clients=1, duration=30)).start()
    assert runner.child is not None
    grandchild = grandchild_of(runner.child)
    try:
        assert_flood_capped(runner.child)
        runner.stop()
        assert_all_gone([runner.child.pid, grandchild])
    finally:
        runner.stop()
        kill_all([grandchild])
