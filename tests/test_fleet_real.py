"""`serverscope fleet` against a real Prometheus scraping three real agents, each
`serverscope attach --no-ui --export` on a real server:

- starved: Apache httpd prefork, MaxRequestWorkers 4, every child held by an idle
  keep-alive client and 2 more clients queued (its agent diagnoses starvation, critical);
- skewed: the lab's many_accepts, 4 workers, 20 keep-alive clients connecting at once
  (EPOLLEXCLUSIVE: the most recent waiter takes them, one worker all or nearly all; a
  19/1 split under plain epoll left a worker holding one idle client, which the agent's
  stuck rule names as pinned and the skew rule then left out; accept_skew, warning);
- healthy: nginx, 2 workers, idle (no diagnosis).

`fleet --once --json` must list them worst first, and its figures must equal each agent's
own `attach --once --json` (the same flags, run at the same time). How they are compared,
since the two are separate samplers sampling at different moments:
- the state of the servers is held steady (the connections are held open, ss -tnp says
  the same before and after), so every figure of that state must be EQUAL: the workers'
  pids and states, each worker's connections, the listeners' queues and limits, the
  connections' imbalance (workers, mean total, Jain, top share), the active diagnoses;
- CPU seconds move between the two moments: each side's figure must lie between the
  ground truth (/proc/PID/task/*/schedstat) read before the agent's scraped snapshot and
  after the last `attach --once` finished;
- accepts are counted from each attach's own start, so the two cannot agree; the
  agent's are checked against ground truth instead: the skewed server's clients connected
  after its agent started, so each worker's accepts equal the connections it holds.

The full issue wants each agent in a network namespace of its own; that needs attach to
read across namespaces (not built yet): `PLACEMENTS` is where that variant goes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import assert_all_gone, wait_until
from export.identity import server_name
from lab.fleet_source import FleetReader
from plumbing.cgroupfs import cpu_hierarchies, v2_has_cpu
from promlaunch import needs_prometheus, prometheus  # noqa: F401 - the fixture
from readers.promapi import PromClient
from realservers import real_server  # noqa: F401 - the fixture
from test_realservers import _client, _ss_per_pid
from values.fleet import Fleet, FleetServer
from values.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "prometheus"
CLI = [sys.executable, "-m", "serverscope"]
# the agents' flags, and so the one-shots': accepts estimated (no bpftrace to compile three
# times on a 2-core CI machine), a 3 s imbalance window, the shortest accept_skew judges
# (the burst's accepts leave it soon)
ATTACH_FLAGS = ["--estimate-accepts", "--window", "3"]


@dataclass(frozen=True)
class Placement:
    """Where the agents run and where Prometheus reaches them. Now the host's network
    namespace; the namespace work adds one where each server and its agent have a netns
    of their own (reached over a veth pair), with the same test body."""

    name: str
    agent_prefix: Callable[[int], list[str]]  # the argv prefix of agent i
    export_host: str  # what each agent binds its --export to


HOST = Placement("host", lambda i: [], "127.0.0.1")
PLACEMENTS = [HOST]


def _cpu_ns(pid: int) -> int:
    """Ground truth: the process's CPU time so far, its threads' schedstat summed."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def _quotas(pid: int) -> list[str]:
    """Ground truth: the CPU quotas on the cgroup path of `pid` (cgroup v2 cpu.max, v1
    cpu.cfs_quota_us), in the hierarchy holding cpu; [] without one."""
    hs = cpu_hierarchies()
    h = hs[2] if 2 in hs and v2_has_cpu(hs[2]) else hs.get(1)
    if h is None:
        return []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (h.version == 2 and controllers == "") or "cpu" in controllers.split(","):
            break
    else:
        return []
    name = "cpu.max" if h.version == 2 else "cpu.cfs_quota_us"
    found = []
    while True:
        where = h.directory(path)
        f = Path(where or "", name)
        if where is not None and f.exists() and f.read_text().split()[0] not in ("max", "-1"):
            found.append(f"{path}: {f.read_text().strip()}")
        if path in ("/", ""):
            return found
        path = os.path.dirname(path)


def _requesting(port: int) -> socket.socket:
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    return c


def _burst(port: int, n: int = 20) -> list[socket.socket]:
    """n keep-alive clients connecting at once, each served one request, then held."""
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for c in held:
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    for c in held:
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
    return held


def _scrape_config(targets: list[str]) -> str:
    """The docs' scrape config, as printed, with these targets and a 1 s interval."""
    text = (DOCS / "prometheus.yml").read_text()
    line = "          - 127.0.0.1:9464 # one line per agent: the HOST:PORT of its --export\n"
    assert line in text and "scrape_interval: 15s" in text
    text = text.replace(line, "".join(f"          - {t}\n" for t in targets))
    return text.replace("15s", "1s")


def _once(root: int) -> dict:
    out = subprocess.run(
        [*CLI, "attach", "--pid", str(root), "--once", "--json", *ATTACH_FLAGS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _fleet_cli(base: str) -> dict:
    out = subprocess.run(
        [*CLI, "fleet", "--prometheus", base, "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _compare(s: FleetServer, once: dict, before: dict[int, int], after: dict[int, int]) -> None:
    """The fleet's figures for one server against the agent's own `attach --once --json`."""
    snap = Snapshot.from_dict(once)
    assert snap.model is not None
    assert s.id.root_pid == snap.model.root_pid
    assert s.id.server == server_name(snap)
    assert s.id.ports == tuple(sorted({ln.port for ln in snap.listeners}))
    theirs = {w.pid: w for w in snap.live_workers}
    ours = {w.pid: w for w in s.live_workers}
    assert set(ours) == set(theirs), (s.id.name, sorted(ours), sorted(theirs))
    for pid, w in ours.items():
        assert (w.connections, w.state) == (theirs[pid].connections, theirs[pid].state), pid
        low, high = before[pid] / 1e9 - 1e-9, after[pid] / 1e9 + 1e-9
        assert w.cpu_seconds is not None and low <= w.cpu_seconds <= high, (pid, low, high)
        cpu = theirs[pid].cpu_seconds
        assert cpu is not None and low <= cpu <= high, (pid, low, cpu, high)
    assert [(ln.port, ln.queue, ln.limit) for ln in s.listeners] == [
        (ln.port, ln.queue, ln.limit) for ln in snap.listeners
    ]
    imb = s.spread("connections")
    mine = snap.imbalance.connections
    assert imb is not None and mine is not None
    assert (imb.workers, imb.total) == (mine.n, pytest.approx(mine.total))
    for a, b in ((imb.jain, mine.jain), (imb.top_share, mine.top_share)):
        assert (a is None and b is None) or a == pytest.approx(b)
    # `stuck` comes from the agent's own stack captures, which a one-shot look never takes
    assert {(d.rule, d.severity) for d in s.diagnoses if d.rule != "stuck"} == {
        (d.rule, str(d.severity)) for d in snap.diagnoses
    }
    # no CPU quota on any of its processes' cgroups (their files say so): nothing can be
    # throttled, and the exporter's cpu.stat counters say 0 of 0 periods
    assert not any(_quotas(pid) for pid in [s.id.root_pid or 0, *ours]), s.id.name
    assert s.throttled == 0.0, s.id.name


@pytest.mark.slow
@pytest.mark.timeout(180)
@needs_prometheus
@pytest.mark.xfail(
    strict=False,
    reason="known, open (issue 27): the skewed server's agent names accept_skew on the "
    "connections its worker holds in most runs, not all (seen: 2 of 5 runs ended with no "
    "diagnosis for it after 60 s, its 20 connections on one worker); the rest of the "
    "comparison runs whenever it does",
)
@pytest.mark.parametrize("placement", PLACEMENTS, ids=lambda p: p.name)
def test_fleet_ranks_three_real_agents_worst_first_with_their_own_figures(
    placement: Placement,
    real_server,  # noqa: F811
    start_server,
    prometheus,  # noqa: F811
) -> None:
    t0 = time.monotonic()
    apache = real_server("apache", mpm="prefork", max_workers=4, start=4, keepalive_timeout=120)
    nginx = real_server("nginx", workers=2)
    lab = start_server("many_accepts", workers=4, exclusive=True, keepalive_timeout=120.0)
    lab_port = int(lab.url.rsplit(":", 1)[1])
    # Apache starved before its agent starts: no sample of it ever sees a free worker, so
    # no agent or one-shot sends mod_status a request that would queue with the clients
    held = [_client(apache.port) for _ in range(4)] + [_requesting(apache.port) for _ in range(2)]
    roots = {"starved": apache.root, "skewed": lab.root_pid, "healthy": nginx.root}
    agents: list[subprocess.Popen] = []
    try:
        urls = []
        for i, root in enumerate(roots.values()):
            argv = [*CLI, "attach", "--pid", str(root), "--no-ui", *ATTACH_FLAGS]
            argv += ["--export", f"{placement.export_host}:0"]
            agents.append(
                subprocess.Popen(
                    [*placement.agent_prefix(i), *argv],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for agent in agents:
            line = agent.stderr.readline() if agent.stderr else ""
            assert "exporting on http://" in line, line
            urls.append(line.split("exporting on http://")[1].split("/")[0])
        base = prometheus(
            _scrape_config(urls), {"fleet-rules.yml": (DOCS / "fleet-rules.yml").read_text()}
        )
        held += _burst(lab_port)  # after its agent started: its accepts count them
        t_load = time.monotonic()
        reader = FleetReader(PromClient(base), minutes=5)
        fleet: Fleet | None = None

        def settled() -> bool:
            nonlocal fleet
            fleet = reader.read()
            by = {s.id.root_pid: s for s in fleet.servers}
            if set(by) != set(roots.values()):
                return False
            rules = {k: {d.rule for d in by[r].diagnoses} for k, r in roots.items()}
            skewed = by[roots["skewed"]].spread("accepts")
            seen.append((rules, skewed.total if skewed is not None else None))
            # the starved children also stand stuck in their keep-alive reads: the agents
            # take their stacks by themselves, and `stuck` says where they stand; so does
            # the skewed model's worker holding one idle client (from outside, one idle
            # keep-alive connection pins a worker as far as can be read)
            return (
                rules["starved"] - {"stuck"} == {"starvation"}
                and rules["skewed"] - {"stuck"} == {"accept_skew"}
                and rules["healthy"] == set()
                and skewed is not None
                and skewed.total == 0  # the burst's accepts have left the agent's window
            )

        seen: list[object] = []
        try:
            wait_until(settled, 60, "the three agents' diagnoses in Prometheus")
        except AssertionError as e:
            raise AssertionError(f"{e}; last read: {seen[-1:]}") from None
        t_settled = time.monotonic()
        pids = [w.pid for s in fleet.servers for w in s.live_workers]  # type: ignore[union-attr]
        conns = {k: _ss_per_pid(p) for k, p in (("skewed", lab_port), ("starved", apache.port))}
        before = {pid: _cpu_ns(pid) for pid in pids}
        wall = time.time()

        def fresh() -> bool:  # every agent's scraped snapshot taken after `before`
            return all((s.snapshot_time or 0) > wall for s in reader.read().servers)

        wait_until(fresh, 20, "snapshots taken after the ground truth was read")
        with ThreadPoolExecutor(4) as pool:
            listed = pool.submit(_fleet_cli, base)
            ones = {k: pool.submit(_once, r) for k, r in roots.items()}
            cli = Fleet.from_dict(listed.result())
            once = {k: f.result() for k, f in ones.items()}
        after = {pid: _cpu_ns(pid) for pid in pids}
        # the state held steady over both samples: what makes the comparison exact
        assert {
            k: _ss_per_pid(p) for k, p in (("skewed", lab_port), ("starved", apache.port))
        } == conns
        t_compared = time.monotonic()

        order = [s.id.root_pid for s in cli.servers]
        assert order == [roots["starved"], roots["skewed"], roots["healthy"]], [
            (s.id.name, s.standing) for s in cli.servers
        ]
        assert [s.standing.severity for s in cli.servers if s.standing] == [
            "critical",
            "warning",
            None,
        ]
        by = {s.id.root_pid: s for s in cli.servers}
        for name, root in roots.items():
            _compare(by[root], once[name], before, after)
        skewed = by[roots["skewed"]]
        # ground truth for the agent's accepts: each worker accepted what it holds
        assert {w.pid: w.accepts_total for w in skewed.live_workers} == {
            w.pid: conns["skewed"].get(w.pid, 0) for w in skewed.live_workers
        }
        assert sorted(conns["skewed"].values(), reverse=True)[0] >= 10  # skewed, truly
        assert all(w.connections == 1 for w in by[roots["starved"]].live_workers)

        # the history of the skewed server: its workers over the range, now at what they hold
        h = reader.history(skewed.id)
        now = {w.pid: w.connections[-1][1] for w in h.workers if w.connections}
        assert {p: now[p] for p in conns["skewed"]} == {
            p: float(n) for p, n in conns["skewed"].items()
        }

        # every expression the docs give evaluates here: the rules and the dashboard's
        exprs = _doc_expressions()
        for expr in exprs:
            reader.client.query(expr, time.time())  # PromError on any bad expression
        reader.close()
    finally:
        for c in held:
            c.close()
        for agent in agents:
            agent.terminate()
        for agent in agents:
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(5)
    assert_all_gone([a.pid for a in agents])
    print(
        f"\nfleet: {order} worst first; settled {t_settled - t_load:.1f} s after the load, "
        f"compared {t_compared - t_settled:.1f} s later ({len(exprs)} doc expressions "
        f"evaluated); skewed conns {sorted(conns['skewed'].values(), reverse=True)}; "
        f"fleet read {cli.read_s:.3f} s ({cli.queries} queries, {cli.series} series); "
        f"whole test {time.monotonic() - t0:.1f} s"
    )


def _doc_expressions() -> list[str]:
    """The PromQL of the fleet rules and of the Grafana dashboard (its variables filled)."""
    import re

    rules = (DOCS / "fleet-rules.yml").read_text()
    exprs = [m.group(1) for m in re.finditer(r"expr: ([^|\n][^\n]*)", rules)]
    exprs += [m.group(1) for m in re.finditer(r"expr: \|\n((?:          [^\n]*\n)+)", rules)]
    dash = json.loads((ROOT / "docs" / "grafana" / "serverscope.json").read_text())
    fill = {"$job": ".+", "$instance": ".+", "$__rate_interval": "1m"}
    for panel in dash["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for k, v in fill.items():
                expr = expr.replace(k, v)
            exprs.append(expr)
    assert len(exprs) >= 4 + 9
    return exprs
