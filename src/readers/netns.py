"""The network namespace a server lives in, and reading its sockets from outside it.

A netlink socket answers for the network namespace it was created in, whatever thread
uses it later. So a sock_diag socket for a server in a container is made by a helper
thread that first enters the namespace (setns(2) with CLONE_NEWNET changes only the
calling thread's namespace), and the thread ends at once: the process's own threads
never leave the host's namespace. The namespace's counters (/proc/net/netstat, snmp,
sockstat) are read through /proc/PID/net of a process inside it, which shows that
process's namespace.

Hand-written with ctypes: Python 3.11 has no os.setns (3.12 adds it), and pyroute2's
netns helpers fork a process per call. Entering needs CAP_SYS_ADMIN (root).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* type (Linux 4.11+)
OWN_NET = "/proc/net"


class NetNsError(RuntimeError):
    """The namespace cannot be used; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class NetNs:
    """A network namespace by the file that names it (/proc/PID/ns/net, /run/netns/NAME)."""

    path: str
    inode: int  # the namespace's id, as `ls -l /proc/PID/ns/net` and `lsns -t net` show it
    own: bool  # the one this process runs in: nothing to enter

    def run(self, fn: Callable[[], T]) -> T:
        """`fn()` called inside the namespace (in a helper thread when it is not ours):
        what it creates there (a socket) stays in the namespace after the thread ends."""
        if self.own:
            return fn()
        return _in_thread(self.path, fn)


def own_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def of_pid(pid: int) -> NetNs:
    """The network namespace of process `pid`."""
    return at(f"/proc/{pid}/ns/net")


def of_pid_if_readable(pid: int) -> NetNs | None:
    """The network namespace of `pid`; None when this user may not inspect it (another
    user's process: its sockets are then read in ours, as before)."""
    try:
        return of_pid(pid)
    except NetNsError:
        return None


def own() -> NetNs:
    """The namespace this thread runs in."""
    return at("/proc/thread-self/ns/net")


def at(path: str) -> NetNs:
    """The network namespace named by `path`; NetNsError (one line) when it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetNsError(
            f"{path}: no such file (give /proc/PID/ns/net or /run/netns/NAME)"
        ) from None
    except PermissionError:
        raise NetNsError(f"{path}: not allowed to open it (run as root)") from None
    except OSError as e:
        raise NetNsError(f"{path}: {e.strerror}") from None
    try:
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = None
        if kind != CLONE_NEWNET:
            raise NetNsError(
                f"{path}: not a network namespace (give /proc/PID/ns/net or /run/netns/NAME)"
            )
        inode = os.fstat(fd).st_ino
    finally:
        os.close(fd)
    return NetNs(path, inode, inode == own_inode())


_libc: ctypes.CDLL | None = None


def _setns(fd: int, kind: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, kind) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _in_thread(path: str, fn: Callable[[], T]) -> T:
    box: dict[str, object] = {}

    def enter() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=enter, name="serverscope-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        e = box["error"]
        if isinstance(e, OSError) and e.errno == errno.EPERM:
            raise NetNsError(f"not allowed to enter the network namespace {path} (run as root)")
        assert isinstance(e, BaseException)
        raise e
    return box["value"]  # type: ignore[return-value]


def net_dir(ns: NetNs | None, pid: int) -> str:
    """Where the namespace's /proc/net files are read: /proc/net for ours, else those of
    `pid`, a process inside it (/proc/PID/net shows its namespace)."""
    return OWN_NET if ns is None or ns.own else f"/proc/{pid}/net"
