"""`serverscope fleet` against a real Prometheus scraping three real agents, each
`serverscope attach --no-ui --export` on a real server:

- starved: Apache httpd prefork, MaxRequestWorkers 4, every child held by an idle
  keep-alive client and 2 more clients queued (its agent diagnoses starvation, critical);
- skewed: the lab's many_accepts, 4 workers, EPOLLEXCLUSIVE, 20 keep-alive clients
  arriving one after another at the idle server, each when every worker waits in
  epoll_wait (/proc/PID/wchan): the kernel wakes the first waiter on the listener's queue
  whose epoll has a thread waiting, the same worker every time, so one worker holds all
  20 (accept_skew on the held connections, warning). Sent at once, the 20 were spread
  by who happened to be back in epoll_wait: 11/2/7/0 in one run of five on a busy
  machine, p = 0.002 against an even spread, which the rule rightly does not call skew;
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

Two placements (`PLACEMENTS`), one test body: every server on the host, and every server
in network and pid namespaces of its own (`unshare --net --pid --fork --mount-proc`,
loopback up: tests/nsservers.py, as a container runs it; its clients connect inside it,
its ground truth is `ss` run there). The agents and the one-shots always run on the host
(`attach --pid`, host pids, reading each server's sockets in its namespace), exporting on
the host's loopback where Prometheus scrapes them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import assert_all_gone, read_response, terminate_all, wait_until
from export.identity import server_name
from lab.fleet_source import FleetReader
from nsservers import NsServer, ns_server  # noqa: F401 - the fixture
from plumbing.cgroupfs import cpu_hierarchies, v2_has_cpu
from promlaunch import needs_prometheus, prometheus  # noqa: F401 - the fixture
from readers.promapi import PromClient
from readers.realtree import descendants
from realservers import real_server  # noqa: F401 - the fixture
from test_realservers import _ss_per_pid
from values.fleet import Fleet, FleetServer
from values.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "prometheus"
CLI = [sys.executable, "-m", "serverscope"]
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
# the agents' flags, and so the one-shots': accepts estimated (no bpftrace to compile three
# times on a 2-core CI machine), a 3 s imbalance window, the shortest accept_skew judges
# (the burst's accepts leave it soon)
ATTACH_FLAGS = ["--estimate-accepts", "--window", "3"]


@dataclass(frozen=True)
class Served:
    """One server of the test, wherever it runs."""

    root: int  # the (host) pid the agent and the one-shot attach to
    port: int
    connect: Callable[[], socket.socket]  # a client connection, made where it listens
    per_pid: Callable[[], dict[int, int]]  # ground truth: its connections per host pid (ss)
    workers: Callable[[], list[int]]  # its workers' host pids now


def _on_host(request: pytest.FixtureRequest) -> dict[str, Served]:
    start_real = request.getfixturevalue("real_server")
    start_model = request.getfixturevalue("start_server")
    apache = start_real("apache", mpm="prefork", max_workers=4, start=4, keepalive_timeout=120)
    nginx = start_real("nginx", workers=2)
    lab = start_model("many_accepts", workers=4, exclusive=True, keepalive_timeout=120.0)

    def served(root: int, port: int, workers: Callable[[], list[int]]) -> Served:
        return Served(
            root,
            port,
            lambda: socket.create_connection(("127.0.0.1", port), timeout=10),
            lambda: _ss_per_pid(port),
            workers,
        )

    return {
        "starved": served(apache.root, apache.port, apache.children),
        "skewed": served(lab.root_pid, int(lab.url.rsplit(":", 1)[1]), lab.worker_pids),
        "healthy": served(nginx.root, nginx.port, nginx.children),
    }


def _in_namespaces(request: pytest.FixtureRequest) -> dict[str, Served]:
    start_ns = request.getfixturevalue("ns_server")
    apache = start_ns("apache", workers=4, keepalive_timeout=120)
    nginx = start_ns("nginx", workers=2)
    lab = start_ns("lab", model="many_accepts", workers=4, exclusive=True, keepalive_timeout=120)
    # pid 1 is `serverscope serve` (the Supervisor); the model's root is its child
    [model_root] = [p for p in lab.children() if _ppid(p) == lab.root]
    wait_until(lambda: len(descendants(model_root)) == 4, 30, "the model's 4 workers")

    def served(srv: NsServer, root: int, workers: Callable[[], list[int]]) -> Served:
        def per_pid() -> dict[int, int]:
            return _per_pid(srv.ss("-tnp", f"( sport = :{srv.port} )"))

        return Served(root, srv.port, srv.connect, per_pid, workers)

    return {
        "starved": served(apache, apache.root, apache.children),
        "skewed": served(lab, model_root, lambda: descendants(model_root)),
        "healthy": served(nginx, nginx.root, nginx.children),
    }


@dataclass(frozen=True)
class Placement:
    """Where the servers run: each placement starts the same three."""

    name: str
    start: Callable[[pytest.FixtureRequest], dict[str, Served]]


PLACEMENTS = [Placement("host", _on_host), Placement("netns", _in_namespaces)]


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _per_pid(ss_lines: list[str]) -> dict[int, int]:
    """Connections per pid in `ss -tnp` lines (a socket shared by several: one each)."""
    per: Counter[int] = Counter()
    for line in ss_lines:
        for pid in set(re.findall(r"pid=(\d+)", line)):
            per[int(pid)] += 1
    return dict(per)


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


def _keepalive(srv: Served) -> socket.socket:
    """A keep-alive client that made one request and stays connected."""
    c = srv.connect()
    c.sendall(GET)
    assert read_response(c, bytearray()).status == 200
    return c


def _requesting(srv: Served) -> socket.socket:
    c = srv.connect()
    c.sendall(GET)
    return c


def _waits_in_epoll(pid: int) -> bool:
    """The process sleeps in epoll_wait (its kernel wait channel), so a new connection
    can wake it. Where the kernel hides wait channels ("0"): sleeping at all."""
    with open(f"/proc/{pid}/wchan") as f:
        where = f.read().strip()
    if where != "0":
        return where in ("do_epoll_wait", "ep_poll")
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "S"


def _one_by_one(srv: Served, n: int = 20) -> list[socket.socket]:
    """n keep-alive clients arriving one after another at the idle server, each when every
    worker is back in epoll_wait, each served one request, then held."""
    held = []
    for _ in range(n):
        wait_until(
            lambda: all(_waits_in_epoll(p) for p in srv.workers()), 10, "every worker in epoll"
        )
        c = srv.connect()
        c.sendall(GET)
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
        held.append(c)
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
    assert s.cpu_limit is None, s.id.name  # and no limit is read, not a limit of 0


@pytest.mark.slow
@pytest.mark.timeout(180)
@needs_prometheus
@pytest.mark.parametrize("placement", PLACEMENTS, ids=lambda p: p.name)
def test_fleet_ranks_three_real_agents_worst_first_with_their_own_figures(
    placement: Placement,
    request: pytest.FixtureRequest,
    prometheus,  # noqa: F811
) -> None:
    t0 = time.monotonic()
    servers = placement.start(request)
    apache, lab = servers["starved"], servers["skewed"]
    # Apache starved before its agent starts: no sample of it ever sees a free worker, so
    # no agent or one-shot sends mod_status a request that would queue with the clients
    held = [_keepalive(apache) for _ in range(4)] + [_requesting(apache) for _ in range(2)]
    roots = {name: srv.root for name, srv in servers.items()}
    agents: list[subprocess.Popen] = []
    try:
        urls = []
        for root in roots.values():  # on the host, exporting on its loopback
            argv = [*CLI, "attach", "--pid", str(root), "--no-ui", *ATTACH_FLAGS]
            argv += ["--export", "127.0.0.1:0"]
            agents.append(
                subprocess.Popen(
                    argv,
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
        held += _one_by_one(lab)  # after its agent started: its accepts count them
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
        conns = {k: servers[k].per_pid() for k in ("skewed", "starved")}
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
        assert {k: servers[k].per_pid() for k in ("skewed", "starved")} == conns
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
        assert sorted(conns["skewed"].values()) == [20]  # one worker holds all 20, truly
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
        terminate_all(agents)
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
