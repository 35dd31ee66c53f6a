"""Small, fast readers of Linux /proc files, for the sampler (TCP_INFO: plumbing.tcpinfo).

Hand-written rather than psutil: psutil builds a Process object and parses several files
per call, which for 250 processes (or 400 threads) at 4 Hz costs several times our 2 %
budget (see bench/bench_sampler.py); here one read and one split per pid/tid suffices.
psutil has no accept-queue, SYN_RECV or TcpExt readers at all, and no TCP_INFO parser.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Stat:
    """The /proc/PID/stat (or task/TID/stat) fields the sources use: the one parser of it."""

    state: str  # R, S, D, Z, ...
    cpu_seconds: float  # utime + stime
    starttime: int  # clock ticks after boot (identity: a reused pid has another)
    num_threads: int
    rss_bytes: int
    comm: str  # the name in parentheses (may itself hold spaces and parentheses)
    ppid: int


def read_stat(path: str) -> Stat | None:
    """Parse a /proc/.../stat file; None when the process/thread has gone."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return parse_stat(data)


def parse_stat(data: bytes) -> Stat:
    lp, rp = data.index(b"("), data.rindex(b")")
    rest = data[rp + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14 -> rest[11]
    return Stat(
        state=rest[0].decode(),
        cpu_seconds=(int(rest[11]) + int(rest[12])) / CLK_TCK,
        starttime=int(rest[19]),
        num_threads=int(rest[17]),
        rss_bytes=int(rest[21]) * PAGE_SIZE,
        comm=data[lp + 1 : rp].decode(errors="replace"),
        ppid=int(rest[1]),
    )


def state_and_rss(data: bytes) -> tuple[str, int, int]:
    """Only the state letter, RSS bytes and thread count of a stat line (realtree's hot
    path: the other fields of a process it has parsed whole do not change)."""
    rest = data[data.rindex(b")") + 2 :].split(None, 23)
    return rest[0].decode(), int(rest[21]) * PAGE_SIZE, int(rest[17])


class KeptFds:
    """/proc files read through file descriptors kept open between samples (pread at
    offset 0): 4x cheaper than open/read/close for 250 pids. An fd stays bound to its
    task: once the task exits, reads fail (ESRCH) and the fd is dropped, so a reused pid
    is never read through an old fd. One class for both sources (the supervisor's
    StatReader below, and readers.realtree for attach): they were two copies."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self._used: set[str] = set()

    def read(self, path: str, size: int = 4096) -> bytes:
        """The file's bytes (up to `size`); b"" when it cannot be read (task gone)."""
        self._used.add(path)
        fd = self.fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return b""
            self.fds[path] = fd
        try:
            data = os.pread(fd, size, 0)
        except OSError:
            data = b""
        if not data:
            os.close(fd)
            del self.fds[path]
        return data

    def read_current(self, path: str, size: int = 4096) -> bytes:
        """`read`, and once more through a new open when the kept fd read nothing: its
        task exited, and the pid may be another process's now. b"" when that fails too."""
        kept = path in self.fds
        data = self.read(path, size)
        if not data and kept:
            data = self.read(path, size)
        return data

    def touch(self, path: str) -> None:
        """Count `path` as read (its fd stays open through the next sweep)."""
        self._used.add(path)

    def sweep(self) -> None:
        """Close the fds not read (nor touched) since the last sweep (workers gone)."""
        for path in list(self.fds):
            if path not in self._used:
                os.close(self.fds.pop(path))
        self._used.clear()

    def keep_only(self, prefixes: set[str]) -> None:
        """Close the fds of paths outside `prefixes` ("/proc/PID/" of the pids kept)."""
        for path in list(self.fds):
            if path[: path.index("/", 6) + 1] not in prefixes:
                os.close(self.fds.pop(path))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class StatReader(KeptFds):
    """Parsed reads of /proc/PID/stat and /proc/PID[/task/TID]/schedstat, through kept fds."""

    def stat(self, path: str) -> Stat | None:
        data = self.read(path)
        return parse_stat(data) if data else None

    def cpu_seconds(self, path: str) -> float | None:
        """CPU time of one task from its schedstat (`/proc/PID[/task/TID]/schedstat`): the
        kernel formats three numbers there instead of stat's fifty, 4x cheaper to read.
        It is the task's own time: for a process, its main thread only."""
        data = self.read(path)
        if not data:
            return None
        return int(data[: data.index(b" ")]) / 1e9

    def proc(self, pid: int) -> Stat | None:
        return self.stat(f"/proc/{pid}/stat")


def proc_stat(pid: int) -> Stat | None:
    return read_stat(f"/proc/{pid}/stat")


def host_cpu() -> tuple[float, float]:
    """(busy seconds, total seconds) summed over all CPUs since boot, from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        line = f.readline()
    v = [int(x) for x in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(v)
    busy = total - v[3] - v[4]
    return busy / CLK_TCK, total / CLK_TCK


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def netstat_counters(net_dir: str = "/proc/net") -> tuple[int, int]:
    """(ListenOverflows, ListenDrops) from NET_DIR/netstat (namespace-wide totals; another
    namespace's through /proc/PID/net, readers.netns.net_dir)."""
    with open(f"{net_dir}/netstat", "rb") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith(b"TcpExt:"):
            d = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(d.get(b"ListenOverflows", 0)), int(d.get(b"ListenDrops", 0))
    return 0, 0


def passive_opens(net_dir: str = "/proc/net") -> int:
    """Tcp PassiveOpens from NET_DIR/snmp: connections the namespace's listeners have taken
    through the handshake since it was made (namespace-wide, every listener's)."""
    with open(f"{net_dir}/snmp", "rb") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith(b"Tcp:"):
            d = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(d.get(b"PassiveOpens", 0))
    return 0


@dataclass(frozen=True, slots=True)
class TcpListen:
    """A LISTEN line of /proc/net/tcp{,6}."""

    address: str
    port: int
    queue: int  # rx_queue: the accept-queue length
    inode: int


# "  sl  local rem st tx:rx tr:when retrnsmt uid timeout inode"
_LINE = re.compile(
    rb"^\s*\d+: ([0-9A-F]+):([0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} ([0-9A-F]{2}) "
    rb"[0-9A-F]+:([0-9A-F]+) \S+ \S+ +\d+ +\d+ (\d+)",
    re.M,
)
ST_ESTABLISHED = b"01"
ST_SYN_RECV = b"03"
ST_LISTEN = b"0A"


def _addr(hexaddr: bytes) -> str:
    raw = bytes.fromhex(hexaddr.decode())
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # IPv6: four 32-bit words, each in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


@dataclass(frozen=True, slots=True)
class TcpTable:
    """What the sampler needs from /proc/net/tcp and tcp6, read once per sample."""

    listens: tuple[TcpListen, ...]
    syn_recv: dict[int, int]  # local port -> sockets in SYN_RECV
    established: dict[int, int]  # socket inode -> local port, for ESTABLISHED sockets


def read_tcp_table(*, established: bool = False) -> TcpTable:
    """Parse /proc/net/tcp and tcp6: LISTEN sockets, SYN_RECV per port (and, if asked,
    ESTABLISHED sockets by inode, for attach's per-process connection counts)."""
    listens: list[TcpListen] = []
    syn: dict[int, int] = {}
    est: dict[int, int] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        for m in _LINE.finditer(data):
            st = m.group(3)
            if st == ST_LISTEN:
                listens.append(
                    TcpListen(
                        _addr(m.group(1)), int(m.group(2), 16), int(m.group(4), 16), int(m.group(5))
                    )
                )
            elif st == ST_SYN_RECV:
                port = int(m.group(2), 16)
                syn[port] = syn.get(port, 0) + 1
            elif established and st == ST_ESTABLISHED:
                est[int(m.group(5))] = int(m.group(2), 16)
    return TcpTable(tuple(listens), syn, est)


def socket_inodes(pid: int) -> list[int]:
    """Inodes of the sockets open in a process (readlink of /proc/PID/fd/*)."""
    out: list[int] = []
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return out
    for name in names:
        try:
            link = os.readlink(f"{base}/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.append(int(link[8:-1]))
    return out


def pids_holding(inodes: set[int]) -> set[int]:
    """Every process with an fd on one of these socket inodes (scans /proc/*/fd).

    psutil.net_connections reports each socket once, with one pid, so it cannot tell
    that a master and its workers share a listening socket."""
    out: set[int] = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and not inodes.isdisjoint(socket_inodes(int(name))):
            out.add(int(name))
    return out


def status_field(pid: int, name: str) -> list[str] | None:
    """The words of the `name:` line of /proc/PID/status (e.g. "SigCgt", "NSpid"); None
    when the process is gone or unreadable, or the kernel has no such line."""
    key = name + ":"
    try:  # (a command name may hold any byte: never a reason to fail)
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key):
                    return line.split()[1:]
    except OSError:
        return None
    return None


def catches(pid: int, signum: int) -> bool | None:
    """Whether `pid` has a handler for `signum` (its SigCgt mask in /proc/PID/status);
    None when the process is gone or unreadable. A process that neither catches nor ignores
    SIGUSR1 (a Node process still starting, or not Node) is ended by it."""
    mask = status_field(pid, "SigCgt")
    return None if not mask else bool(int(mask[0], 16) >> (signum - 1) & 1)
