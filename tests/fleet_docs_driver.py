"""Runs every `serverscope` command of a fleet page (docs/fleet.md, or the page named as the
argument: docs/production.md's fleet section) as written, in the network namespace it is
started in (tests/test_fleet_docs.py starts it under `unshare --net`, so the ports the page
names, 8080, 9464... and Prometheus's 9090, are free and nothing else is scraped).

The page's long-running commands are started the way a reader starts them, each in a
terminal of its own: `serve` (the server), the agents (`attach ... --export`, or a lab run
`run ... --export`); then a real Prometheus with the page's config
(docs/prometheus/prometheus.yml and its rules, the scrape interval cut from 15 s to 1 s, its
targets the agents' --export addresses as printed) and every `fleet` command: `--once` to
its end, the screen in a pseudo-terminal until it draws every server, then `q`. Prints one
JSON line: the commands run, what each printed, and every pid started; exits 1 with the
reason when one fails.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "fleet.md"
CONFIG = ROOT / "docs" / "prometheus"
CLI = [sys.executable, "-m", "serverscope"]
PROMETHEUS_AT = "127.0.0.1:9090"  # where `fleet` looks by default


class Failed(Exception):
    pass


def commands(text: str) -> list[str]:
    """The `serverscope ...` lines of the page's shell code blocks (fenced, not yaml)."""
    out, shell, fence = [], False, False
    for line in text.splitlines():
        m = re.match(r"^```(\w*)", line)
        if m:
            fence = not fence
            shell = fence and m.group(1) in ("", "sh", "bash", "console")
            continue
        if shell and line.startswith("serverscope "):
            out.append(line.strip())
    return out


def fleet_section(text: str) -> str:
    """The page's fleet: the whole of docs/fleet.md, or the section ("## ...fleet") of a page
    that has other commands too (docs/production.md's exporter lines run elsewhere)."""
    m = re.search(r"^## [^\n]*fleet[^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    return m[1] if m and PAGE.name != "fleet.md" else text


def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise Failed(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def query(expr: str) -> list[dict]:
    url = f"http://{PROMETHEUS_AT}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)["data"]["result"]  # type: ignore[no-any-return]
    except OSError:
        return []


def tui(argv: list[str], shows: list[str], timeout: float = 40.0) -> str:
    """Run a screen in a pseudo-terminal until its output has shown each of `shows`, then
    press q."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "36"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    try:
        end = time.monotonic() + timeout
        while not all(x.encode() in seen for x in shows):
            if time.monotonic() > end or proc.poll() is not None:
                raise Failed(f"{shlex.join(argv)}: never drew {shows!r}: {seen[-400:]!r}")
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        os.write(master, b"q")
        end = time.monotonic() + 15
        while proc.poll() is None:  # keep reading: a full pty would block its exit
            if time.monotonic() > end:
                raise Failed(f"{shlex.join(argv)}: still running 15 s after q")
            if select.select([master], [], [], 0.2)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    pass
        if proc.returncode != 0:
            raise Failed(f"{shlex.join(argv)}: exit status {proc.returncode} after q")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    return ", ".join(shows)


def main() -> int:
    global PAGE
    if len(sys.argv) > 1:
        PAGE = ROOT / sys.argv[1]
    started: list[subprocess.Popen] = []
    ran: list[dict] = []
    error: str | None = None
    pids: set[int] = set()
    tmp = Path(tempfile.mkdtemp(prefix="serverscope-fleet-docs-"))
    try:
        run(started, ran, tmp)
    except (Failed, OSError, subprocess.SubprocessError, ValueError) as e:
        error = str(e)
    finally:
        for proc in started:  # every pid, the server's workers too, to check them gone
            pids.add(proc.pid)
            try:
                pids.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        for proc in reversed(started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if proc.args[0] == "prometheus" else signal.SIGINT)
        for proc in started:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"ran": ran, "pids": sorted(pids), "error": error}), flush=True)
    return 1 if error else 0


def run(started: list[subprocess.Popen], ran: list[dict], tmp: Path) -> None:
    t0 = time.monotonic()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    docs = commands(fleet_section(PAGE.read_text(encoding="utf-8")))
    serve = [c for c in docs if c.split()[1] == "serve"]
    agents = [c for c in docs if c.split()[1] in ("attach", "run") and "--export" in c]
    fleet = [c for c in docs if c.split()[1] == "fleet"]
    other = [c for c in docs if c not in serve + agents + fleet]
    if other or len(serve) > 1 or not agents or not fleet:
        raise Failed(f"commands the driver has no rule for: {other or docs}")
    targets = []
    for line in serve + agents:
        words = shlex.split(line, comments=True)
        proc = subprocess.Popen(
            [*CLI, *words[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        started.append(proc)
        if words[1] == "serve":
            port = int(words[words.index("--port") + 1])
            wait(lambda p=port: _listening(p), 30, f"{line} to listen")  # type: ignore[misc]
        elif words[1] == "attach":
            said = proc.stderr.readline() if proc.stderr else ""
            if "exporting on http://" not in said:
                raise Failed(f"{line}: {said.strip() or 'exited'}")
        else:  # a lab run says nothing of its exporter: its port answers
            port = int(words[words.index("--export") + 1].rpartition(":")[2])
            wait(lambda p=port: _listening(p), 60, f"{line} to export")  # type: ignore[misc]
        if "--export" in words:
            targets.append(words[words.index("--export") + 1])
        ran.append({"command": line, "as": "started", "at_s": time.monotonic() - t0})
    shutil.copy(CONFIG / "fleet-rules.yml", tmp / "fleet-rules.yml")
    config = (CONFIG / "prometheus.yml").read_text().replace("15s", "1s")
    listed = re.search(r"( *)- 127\.0\.0\.1:9464.*\n", config)
    if listed is None:
        raise Failed("docs/prometheus/prometheus.yml lists no target 127.0.0.1:9464")
    config = config.replace(listed[0], "".join(f"{listed[1]}- {t}\n" for t in targets))
    (tmp / "prometheus.yml").write_text(config)
    with open(tmp / "prometheus.log", "wb") as log:
        started.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address={PROMETHEUS_AT}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    wait(
        lambda: len(query('serverscope_server_info{job="serverscope"}')) == len(agents),
        60,
        f"Prometheus to scrape the {len(agents)} agent(s)",
    )
    # each server as its agent names it (attached, the lab's model is its program's name)
    infos = [r["metric"] for r in query('serverscope_server_info{job="serverscope"}')]
    ours = {p.pid for p in started[: len(serve) + len(agents)]}
    for proc in started[: len(serve) + len(agents)]:
        ours.update(c.pid for c in psutil.Process(proc.pid).children(True))
    roots = [i.get("root_pid", "") for i in infos]
    if not all(r.isdigit() and int(r) in ours for r in roots):  # the servers started
        raise Failed(f"the agents name {infos}, not the servers started (pids {sorted(ours)})")
    expected = sorted((i["server"], int(i["root_pid"])) for i in infos)
    ran.append(
        {"command": "(Prometheus scraped the agents)", "as": "-", "at_s": time.monotonic() - t0}
    )
    for line in fleet:
        words = shlex.split(line, comments=True)
        argv = [*CLI, *words[1:]]
        if "--once" not in words:
            shows = tui(argv, roots)
            ran.append(
                {"command": line, "as": "screen", "shows": shows, "at_s": time.monotonic() - t0}
            )
            continue
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if out.returncode != 0 or not all(r in out.stdout for r in roots):
            raise Failed(f"{line}: exit {out.returncode}: {out.stdout[-300:]}{out.stderr}")
        if "--json" in words:
            ids = [s["id"] for s in json.loads(out.stdout)["servers"]]
            if sorted((i["server"], i["root_pid"]) for i in ids) != expected:
                raise Failed(f"{line}: {ids}, not {expected}")
        ran.append(
            {"command": line, "as": "once", "stdout": out.stdout, "at_s": time.monotonic() - t0}
        )


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
