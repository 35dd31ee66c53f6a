"""KEPT FOR bench/bench_sockdiag.py ONLY: the attach source before issue 14 (replaced by
sources.attach_source on sources.realattach), so the bench measures today's cost and
the old one in the same run.

The source for a server we did not start: by PID (and its descendants) or listening port.

The process tree via psutil, CPU per process from /proc, open connections per process from
its socket fds and /proc/net/tcp{,6}, the queue from /proc/net/tcp{,6} (and its limit from
sock_diag, as ss). No scoreboard: states are "unknown", accepts and requests None.
To be rebuilt on sources.realattach (sock_diag instead of /proc/net/tcp, which costs
39 ms at 14k lines: see bench/bench_sockdiag.py).
"""

from __future__ import annotations

import psutil

from readers import procfs
from sources.reading import Reading, WorkerDeltas
from values.snapshot import Kind, ListenerSample, ModelInfo, Role, WorkerSample, WorkerState

ATTACH_TREE_REFRESH_S = 2.0  # how often an attach source re-reads the process tree


class AttachError(RuntimeError):
    """Nothing to attach to; the message is one line for the user."""


class AttachSource:
    """A server we did not start: a PID (and its descendants) or the owner of a port."""

    kind = "attach"

    def __init__(self, *, pid: int | None = None, port: int | None = None) -> None:
        if (pid is None) == (port is None):
            raise ValueError("give exactly one of pid, port")
        self.port = port
        if port is not None:
            pid = self._owner_of(port)
        assert pid is not None
        try:
            self.root = _serverscope_root(psutil.Process(pid))
        except psutil.NoSuchProcess:
            raise AttachError(f"no process with pid {pid}") from None
        except psutil.AccessDenied:
            raise AttachError(f"not allowed to watch pid {pid} (run as its user)") from None
        self.name = self.root.name()
        self.children: list[int] = []
        self.listen_inodes: set[int] = set()
        self._refreshed = -1e9

    @staticmethod
    def _owner_of(port: int) -> int:
        tcp = procfs.read_tcp_table()
        inodes = {ln.inode for ln in tcp.listen_on(port)}
        if not inodes:
            raise AttachError(f"nothing listens on TCP port {port}")
        owners = procfs.pids_holding(inodes)
        if not owners:
            raise AttachError(
                f"port {port} is listened on, but its process is not visible (another user?)"
            )
        # the root: the owner none of whose ancestors holds the socket; when several
        # siblings hold it (a master that closed its copy), their common parent
        roots = []
        for pid in sorted(owners):
            try:
                parents = {p.pid for p in psutil.Process(pid).parents()}
            except psutil.Error:
                continue
            if not parents & owners:
                roots.append(pid)
        if len(roots) == 1:
            return roots[0]
        try:
            ppids = {psutil.Process(pid).ppid() for pid in roots}
        except psutil.Error:
            ppids = set()
        if len(ppids) == 1 and (ppid := ppids.pop()) > 1:
            return ppid
        return min(roots or owners)

    def _refresh(self, now: float, tcp: procfs.TcpTable) -> None:
        try:
            self.children = [c.pid for c in self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            raise RuntimeError(f"pid {self.root.pid} has exited") from None
        listen = {ln.inode for ln in tcp.listens}
        inodes: set[int] = set()
        for pid in [self.root.pid, *self.children]:
            inodes.update(i for i in procfs.socket_inodes(pid) if i in listen)
        if self.port is not None:
            inodes.update(ln.inode for ln in tcp.listen_on(self.port))
        self.listen_inodes = inodes
        self._refreshed = now

    def read(self, now: float, deltas: WorkerDeltas) -> Reading:
        tcp = procfs.read_tcp_table(established=True)
        if not self.root.is_running():
            raise RuntimeError(f"pid {self.root.pid} has exited")
        known = {ln.inode for ln in tcp.listens}
        if now - self._refreshed >= ATTACH_TREE_REFRESH_S or not self.listen_inodes <= known:
            self._refresh(now, tcp)
        listeners = self._listeners(tcp)
        ports = {ln.port for ln in listeners}
        root_pid = self.root.pid
        # a root with children is their master: sampled, but not a worker
        pids = [root_pid, *self.children] if self.children else [root_pid]
        root_stat = procfs.proc_stat(root_pid)
        workers = []
        nthreads = root_stat.num_threads if root_stat else 0
        for pid in pids:
            st = root_stat if pid == root_pid else procfs.proc_stat(pid)
            if st is None:
                continue
            if pid != root_pid:
                nthreads += st.num_threads
            conns = sum(1 for i in procfs.socket_inodes(pid) if tcp.established.get(i, -1) in ports)
            pct, _, _ = deltas((None, pid, st.starttime), True, st.cpu_seconds, None, None)
            master = pid == root_pid and bool(self.children)
            workers.append(_process(pid, st, pct, conns, Role.MASTER if master else Role.WORKER))
        model = ModelInfo(
            name="attached",
            root_pid=root_pid,
            master_rss_bytes=root_stat.rss_bytes if root_stat else None,
            processes=len({root_pid, *pids}),
            threads=nthreads,
        )
        return Reading(model, root_stat.cpu_seconds if root_stat else None, workers, listeners)

    def _listeners(self, tcp: procfs.TcpTable) -> list[ListenerSample]:
        mine = [ln for ln in tcp.listens if ln.inode in self.listen_inodes]
        limits = procfs.listen_limits() if mine else {}
        return [
            ListenerSample(
                index=i,
                port=ln.port,
                address=ln.address,
                queue=ln.queue,
                limit=limits.get(ln.inode, (0, None))[1],
                syn_recv=tcp.syn_recv.get(ln.port, 0),
                source="proc_net_tcp",
                inode=ln.inode,
            )
            for i, ln in enumerate(sorted(mine, key=lambda x: (x.port, x.address, x.inode)))
        ]


def _process(
    pid: int, st: procfs.Stat, cpu_percent: float | None, connections: int, role: Role
) -> WorkerSample:
    return WorkerSample(
        slot=None,
        pid=pid,
        tid=pid,
        generation=st.starttime,
        kind=Kind.PROCESS,
        state=WorkerState.UNKNOWN,
        age_s=None,
        cpu_percent=cpu_percent,
        cpu_seconds=st.cpu_seconds,
        rss_bytes=st.rss_bytes,
        connections=connections,
        name=_name(pid),
        role=role,
    )


SERVERSCOPE_ROOT_ARGS = ("-m", "servers.root")  # how a serverscope model root is started


def _serverscope_root(proc: psutil.Process) -> psutil.Process:
    """`proc`, or, when `proc` is a serverscope supervisor (`serverscope serve`, the TUI,
    a test), the model root under it: the `python -m servers.root` process, which holds
    the scoreboard and is the root pid `serve` prints. The supervisor keeps copies of the
    listening sockets, so the port's owner is the supervisor, and its children are the
    master and the workers: taking it as the root counted the master as a fifth worker
    of four. Forked workers share the root's command line, so the root is the one whose
    parent does not."""
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return proc
    roots: dict[int, psutil.Process] = {}
    for p in tree:
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if any(cmd[i : i + 2] == list(SERVERSCOPE_ROOT_ARGS) for i in range(len(cmd) - 1)):
            roots[p.pid] = p
    if proc.pid in roots:
        return proc
    for p in roots.values():
        try:
            if p.ppid() not in roots:
                return p
        except psutil.Error:
            continue
    return proc


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
