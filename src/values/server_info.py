"""What a snapshot says about the server as a whole and the host beside its workers: the
model's (or attached tree's) figures, the namespace's TCP counters, the host's CPU."""

from __future__ import annotations

from dataclasses import dataclass

from .placement import Placement


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The model area of the scoreboard plus the master's own figures.

    When attached, `name` is "attached", `root_pid` the PID given (or the owner of the port)
    and the scoreboard-only fields stay None.
    """

    name: str  # model name ("many_accepts", ...) or "attached"
    root_pid: int  # the model's root process: the master for forking models
    master_cpu_percent: float | None = None  # root process (all its threads), % of one core
    master_rss_bytes: int | None = None
    gil: bool | None = None  # True: CPython with the GIL; False: free-threaded; None unknown
    ready: bool | None = None  # initial workers started
    expected: int | None = None  # initial worker slots
    spawns: int | None = None  # workers started by the master, total
    deaths: int | None = None  # workers that died, total
    dispatches: int | None = None  # connections handed out by a master (cluster), total
    dispatches_delta: int | None = None  # ... in the interval
    handoff_failures: int | None = None  # accepted, never handed to a worker (cluster), total
    last_death_pid: int | None = None
    last_death_status: int | None = None  # waitpid status (signal number if killed)
    last_death_age_s: float | None = None  # seconds since the last death
    error: str = ""  # a start-up failure the root reported
    processes: int = 0  # distinct live processes (root included)
    threads: int = 0  # OS threads across those processes (0 when not read)
    server: str | None = None  # attach: what the tree looks like ("apache-prefork", "nginx",
    # "node-cluster-rr", "gunicorn-sync", ...), for diagnoses that name a fix; None unknown
    accepts_method: str | None = None  # attach: "exact (eBPF)" or "estimate" (None: own model)
    accepts_note: str | None = None  # attach: why exact accepts are not counted, or how
    queue_method: str | None = None  # attach: how queue wait is measured (Phases.queue);
    queue_note: str | None = None  # None with the one-line reason when it is not measured
    status: str | None = None  # attach: where worker states come from ("mod_status URL",
    # "outside view (/proc + sockets)"), and why mod_status is not read when it is not
    program: str | None = None  # attach: the server's executable (/proc/PID/exe, else its
    # comm), e.g. "nginx", "apache2", "python3.11"; None for the lab's own models
    access_note: str | None = None  # attach: what /proc would not show this user, and the
    # fix, in one line ("connections unknown: ... run as root or as the server's user")
    policy: str | None = None  # a lab model's balancing policy as started (its config:
    # --accept-policy, --steer, --policy), None: the model has none, or attached
    placement: Placement | None = None  # attach: its namespaces, cgroup, container and
    # inner pids (readers.placement, from /proc); None: the lab's own model, or not read
    connections_method: str | None = None  # attach: where connection counts come from
    # (a sock_diag dump each sample, or the last one while eBPF saw no change); None: lab
    connections_note: str | None = None  # attach: a cross-check dump that disagreed with
    # what eBPF said (count, in one line); None: none did


@dataclass(frozen=True, slots=True)
class KernelCounters:
    """TcpExt counters from /proc/net/netstat. NAMESPACE-WIDE: every socket in the network
    namespace adds to them, not only this server's (label them so)."""

    listen_overflows: int  # total since boot: accept queue full when a handshake completed
    listen_drops: int  # total since boot: SYNs/handshakes dropped at a listener (superset)
    overflows_delta: int | None = None  # in the interval (None on the first sample)
    drops_delta: int | None = None  # in the interval
    overflows_per_s: float | None = None  # overflows_delta / interval
    drops_per_s: float | None = None  # drops_delta / interval
    scope: str = "namespace"  # always "namespace": not per socket, not per server


@dataclass(frozen=True, slots=True)
class HostSample:
    """The whole machine, from /proc/stat: for "cores idle" judgements."""

    cpu_count: int  # online logical CPUs
    cpu_percent: float | None = None  # busy over the interval, % of one core (max 100*count)

    @property
    def idle_cores(self) -> float | None:
        """Cores' worth of idle CPU over the interval (e.g. 1.0 = one whole core idle)."""
        if self.cpu_percent is None:
            return None
        return max(0.0, self.cpu_count - self.cpu_percent / 100.0)
