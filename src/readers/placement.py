"""Where a server runs, read from /proc: its network and pid namespaces, each process's pid
inside its own pid namespace (the last field of NSpid in /proc/PID/status: what the
container's `ps` and logs show), its cgroup path, and the container the path names.

The container is read from the cgroup path only, the way runtimes name their cgroups:
docker (`docker-<id>.scope`, `/docker/<id>`), podman (`libpod-<id>.scope`), containerd
and CRI-O under Kubernetes (`kubepods.../pod<uid>/<id>`, `cri-containerd-<id>.scope`,
`crio-<id>.scope`), LXC (`/lxc/<name>`, `lxc.payload.<name>`) and systemd-nspawn
(`machine-<name>.scope`). The runtime is not asked (no socket of docker's is opened),
so a container's name is known only where the path carries one (LXC, nspawn).
"""

from __future__ import annotations

import os
import re

from values.placement import Placement

from .netns import NetNs
from .procfs import status_field

_ID = r"([0-9a-f]{12,64})"
_POD = r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
_KUBE_POD = re.compile(r"kubepods\b.*?" + _POD)
_KUBE_CONTAINER = re.compile(r"/(?:cri-containerd-|crio-|docker-)?([0-9a-f]{64})(?:\.scope)?$")
_RULES = (
    ("docker", re.compile(r"docker-" + _ID + r"\.scope")),
    ("docker", re.compile(r"/docker/" + _ID + r"(?:/|$)")),
    ("podman", re.compile(r"libpod-(?:conmon-)?" + _ID + r"\.scope")),
    ("podman", re.compile(r"/libpod_parent/libpod-" + _ID)),
    ("containerd", re.compile(r"cri-containerd-" + _ID + r"\.scope")),
    ("cri-o", re.compile(r"crio-(?:conmon-)?" + _ID + r"\.scope")),
    ("lxc", re.compile(r"/lxc\.payload[.-]([^/]+)")),
    ("lxc", re.compile(r"/lxc/([^/]+)")),
    ("systemd-nspawn", re.compile(r"/machine-([^/]+)\.scope")),
)
SHORT_ID = 12  # as `docker ps` shows an id


def container_of(path: str) -> str | None:
    """The runtime and the container's id (12 characters) or name that a cgroup path
    carries, e.g. "docker 3f2a9c1b7d4e"; None when it names none."""
    pod = _KUBE_POD.search(path)
    if pod:
        uid = pod.group(1).replace("_", "-")
        c = _KUBE_CONTAINER.search(path[pod.end() :])
        return f"kubernetes pod {uid}" + (f" container {c.group(1)[:SHORT_ID]}" if c else "")
    for runtime, rule in _RULES:
        m = rule.search(path)
        if m:
            name = m.group(1)
            if re.fullmatch(_ID, name):
                return f"{runtime} {name[:SHORT_ID]}"
            return f"{runtime} {_unescape(name)}"
    return None


def _unescape(name: str) -> str:
    """systemd's unit-name escapes (machine-web\\x2d1.scope is the machine web-1)."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def cgroup_path(pid: int) -> str | None:
    """The process's cgroup path: the v2 one, else the first v1 hierarchy's that is not
    the root (a host with v1 controllers and v2 mounted aside has both); None when
    unreadable, "/" when it is at the root of every hierarchy."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    paths = [ln.split(":", 2) for ln in lines if ln.count(":") >= 2]
    v2 = [p[2] for p in paths if p[0] == "0" and p[1] == ""]
    v1 = [p[2] for p in paths if not (p[0] == "0" and p[1] == "")]
    for path in (*v2, *v1):
        if path != "/":
            return path
    return "/" if paths else None


def ns_pid(pid: int) -> int | None:
    """The pid of `pid` inside its own pid namespace (NSpid's last field); None when
    unreadable (gone, or a kernel before 4.1 without NSpid)."""
    nspid = status_field(pid, "NSpid")
    return int(nspid[-1]) if nspid else None


def pidns_inode(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


class PlacementReader:
    """The placement of a tree, each pid's inner pid read once (it never changes)."""

    def __init__(self, root: int, netns: NetNs) -> None:
        self.root = root
        self.netns = netns
        mine = pidns_inode("self")
        self.pidns_own = mine is None or pidns_inode(root) in (None, mine)
        self.cgroup = cgroup_path(root)
        self.container = container_of(self.cgroup) if self.cgroup else None
        self._inner: dict[int, int | None] = {}
        self._last: Placement | None = None

    def read(self, pids: list[int]) -> Placement:
        inner = self._inner
        if not self.pidns_own:
            for pid in set(inner) - set(pids):  # gone: a reused pid is read afresh
                del inner[pid]
            for pid in pids:
                if pid not in inner:
                    inner[pid] = ns_pid(pid)
        ns_pids = {p: n for p, n in inner.items() if n is not None and n != p}
        last = self._last
        if last is None or last.ns_pids != ns_pids:
            self._last = Placement(
                netns=self.netns.inode,
                netns_own=self.netns.own,
                pidns_own=self.pidns_own,
                cgroup=self.cgroup,
                container=self.container,
                ns_pids=ns_pids,
            )
        assert self._last is not None
        return self._last
