"""Where an attached server runs: its namespaces, cgroup and container (readers.placement)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Placement:
    netns: int  # inode of its network namespace (/proc/PID/ns/net, as `lsns -t net`)
    netns_own: bool  # the monitor's own network namespace (then no container of its own)
    pidns_own: bool  # the monitor's own pid namespace (then pids are the same inside)
    cgroup: str | None = None  # the root's cgroup path (/proc/PID/cgroup: v2, else a v1 one)
    container: str | None = None  # runtime and id (or name) the cgroup path carries, e.g.
    # "docker 3f2a9c1b7d4e", "kubernetes pod 7d1c... container 0b5e..."; None: none found
    ns_pids: dict[int, int] = field(default_factory=dict)  # host pid -> its pid inside its
    # own pid namespace (NSpid in /proc/PID/status), for the pids where they differ

    @property
    def elsewhere(self) -> bool:
        """In namespaces other than the monitor's (a monitor inside the same container
        as the server sees its cgroup name a container, and is not elsewhere)."""
        return not (self.netns_own and self.pidns_own)

    def by_host_pid(self, by_inner: dict[int, T]) -> dict[int, T]:
        """`by_inner` keyed by host pids (a server's own tables name its namespace's)."""
        host = {inner: pid for pid, inner in self.ns_pids.items()}
        return {host.get(p, p): v for p, v in by_inner.items()}

    def describe(self) -> str:
        """One line, e.g. "network namespace 4026532176 (not ours) · container docker
        3f2a9c1b7d4e · cgroup /system.slice/docker-3f2a….scope · pid inside->host 1->15735"."""
        net = f"network namespace {self.netns}" + ("" if self.netns_own else " (not ours)")
        parts = [net]
        if self.container:
            parts.append(f"container {self.container}")
        if self.cgroup:
            parts.append(f"cgroup {self.cgroup}")
        if self.ns_pids:
            shown = sorted(self.ns_pids.items(), key=lambda kv: kv[1])[:4]
            more = "" if len(self.ns_pids) <= 4 else f" (+{len(self.ns_pids) - 4})"
            pids = ", ".join(f"{inner}->{host}" for host, inner in shown)
            parts.append(f"pid inside->host {pids}{more}")
        elif not self.pidns_own:
            parts.append("own pid namespace")
        return " · ".join(parts)
