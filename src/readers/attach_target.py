"""Which process tree `serverscope attach` watches: the owner of a port, the ports of a
tree, and the model root under a serverscope supervisor. Every failure is an AttachError
whose message is one line for the user, naming the fix."""

from __future__ import annotations

import os

import psutil

from . import procfs
from .netns import NetNs
from .realtree import descendants
from .sockdiag import SockDiag


class AttachError(RuntimeError):
    """Nothing to attach to; the message is one line for the user."""


NOT_ALLOWED = "run as root or as the server's user"


def fds_readable(pid: int) -> bool:
    """Whether this user may list the process's fds (which sockets it holds)."""
    try:
        os.listdir(f"/proc/{pid}/fd")
        return True
    except PermissionError:
        return False
    except OSError:
        return True  # gone: nothing is hidden from us


def owner_of(port: int, netns: NetNs | None = None) -> int:
    """The root among the processes holding a listening socket on `port` (in `netns`,
    ours when None): the owner none of whose ancestors holds it; when several siblings
    hold it (a master that closed its copy), their common parent."""
    with SockDiag(netns) as diag:
        inodes = {x.inode for x in diag.listeners([port])}
    if not inodes:
        where = "" if netns is None or netns.own else f" in the network namespace {netns.path}"
        raise AttachError(f"nothing listens on TCP port {port}{where}")
    owners = procfs.pids_holding(inodes)
    if not owners:
        raise AttachError(
            f"port {port} is listened on by a process whose sockets this user may not "
            f"read: {NOT_ALLOWED} (or give --pid)"
        )
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


def ports_of(root: int, netns: NetNs | None = None) -> list[int]:
    """The TCP ports the tree of `root` listens on (in `netns`, ours when None)."""
    mine: set[int] = set()
    for pid in [root, *descendants(root)]:
        mine.update(procfs.socket_inodes(pid))
    with SockDiag(netns) as diag:
        return sorted({x.local_port for x in diag.listeners() if x.inode in mine})


def check_port_of(root: int, port: int, netns: NetNs | None = None) -> list[int]:
    """`root`'s tree listens on `port` (given with --pid and --port): its ports, else an
    AttachError naming whose port it is. Else every listener figure would be another
    server's (or nobody's) beside this tree's workers."""
    ports = ports_of(root, netns)
    if port in ports:
        return ports
    try:
        owner: int | None = owner_of(port, netns)
    except AttachError as e:
        owner, why = None, str(e)
    mine = f"it listens on {', '.join(map(str, ports))}" if ports else "it listens on no TCP port"
    if owner is None:
        raise AttachError(f"{why} (pid {root}: {mine})")
    raise AttachError(
        f"pid {root} does not listen on TCP port {port} ({mine}); pid {owner} does: "
        f"give --port alone, or --pid {owner}"
    )


SERVERSCOPE_ROOT_ARGS = ("-m", "servers.root")  # how a serverscope model root is started


def serverscope_root(proc: psutil.Process) -> psutil.Process:
    """`proc`, or, when `proc` is a serverscope supervisor (`serverscope serve`, the TUI,
    a test), the model root under it: the `python -m servers.root` process, which holds
    the scoreboard and is the root pid `serve` prints. The supervisor keeps copies of the
    listening sockets, so the port's owner is the supervisor, and its children are the
    master and the workers: taking it as the root counted the master as a fifth worker
    of four. The supervisor starts the root itself (plumbing.child), so only `proc`'s own
    children are looked at: searching its whole tree took, for `--pid 1`, some other
    serverscope's model root anywhere on the machine. Several (one supervisor running
    several models): the one sharing a socket with `proc`, else `proc` itself."""
    if _is_model_root(proc):  # its forked workers have its command line
        return proc
    try:
        kids = [p for p in proc.children() if _is_model_root(p)]
    except psutil.Error:
        return proc
    if len(kids) == 1:
        return kids[0]
    held = set(procfs.socket_inodes(proc.pid))
    sharing = [p for p in kids if held & set(procfs.socket_inodes(p.pid))]
    return sharing[0] if len(sharing) == 1 else proc


def _is_model_root(p: psutil.Process) -> bool:
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return False
    return any(cmd[i : i + 2] == list(SERVERSCOPE_ROOT_ARGS) for i in range(len(cmd) - 1))
