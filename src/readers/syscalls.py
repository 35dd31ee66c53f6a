"""The system call a thread is blocked in and its arguments, from /proc/PID/task/TID/syscall
(`232 0x7 0x7ffd... ...`: epoll_wait on fd 7; `running`: on a CPU). It needs ptrace read
access (root, or the process's own user); without it the file cannot be read and callers
fall back on /proc/.../wchan (readers.mechanism). One short read a thread (~10 us).

The accept mechanism (readers.mechanism: who waits in accept or epoll on a listener) and
the stuck rule's evidence (`blocked`: what a worker's main thread waits in) both read it
here."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence

from values.blocked import IDLE_WAITS, POLLS, RUNNING, Blocked

# the calls a server blocks in, by number (asm/unistd_64.h; aarch64: asm-generic/unistd.h)
_NAMES = {
    "x86_64": {
        **{0: "read", 1: "write", 7: "poll", 17: "pread64", 19: "readv", 20: "writev"},
        **{23: "select", 34: "pause", 35: "nanosleep", 40: "sendfile", 43: "accept"},
        **{44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 61: "wait4"},
        **{72: "fcntl", 73: "flock", 202: "futex", 230: "clock_nanosleep"},
        **{232: "epoll_wait", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait"},
        **{288: "accept4", 299: "recvmmsg", 426: "io_uring_enter", 441: "epoll_pwait2"},
    },
    "aarch64": {
        **{22: "epoll_pwait", 25: "fcntl", 32: "flock", 63: "read", 64: "write", 65: "readv"},
        **{66: "writev", 67: "pread64", 71: "sendfile", 72: "pselect6", 73: "ppoll"},
        **{98: "futex", 101: "nanosleep", 115: "clock_nanosleep", 202: "accept"},
        **{206: "sendto", 207: "recvfrom", 211: "sendmsg", 212: "recvmsg", 242: "accept4"},
        **{243: "recvmmsg", 260: "wait4", 426: "io_uring_enter", 441: "epoll_pwait2"},
    },
}
NAMES: dict[int, str] = _NAMES.get(platform.machine(), {})
MAX_THREADS = 64  # past this, only the main thread is read (a pool's idle threads)
# the calls whose first argument is a file descriptor (clock_nanosleep's is a clock id,
# select's a count, poll's a pointer, futex's an address)
FD_FIRST = frozenset(
    {"read", "write", "pread64", "readv", "writev", "sendfile", "accept", "accept4"}
    | {"sendto", "recvfrom", "sendmsg", "recvmsg", "recvmmsg", "fcntl", "flock"}
    | {"epoll_wait", "epoll_pwait", "epoll_pwait2", "io_uring_enter"}
)


def read_syscall(pid: int, tid: int) -> tuple[str, tuple[int, ...]] | None:
    """(name, arguments) of the call thread `tid` is blocked in: ("running", ()) when on a
    CPU, ("syscall N", args) for a number not named here; None when not readable (gone,
    no ptrace access) or blocked outside a system call."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return parse_syscall(data)


def parse_syscall(data: bytes) -> tuple[str, tuple[int, ...]] | None:
    """read_syscall's answer from the file's bytes."""
    fields = data.split()
    if not fields:
        return None
    if fields[0] == b"running":
        return (RUNNING, ())
    if not fields[0].isdigit():  # "-1 sp pc": blocked, not in a system call
        return None
    try:
        number, args = int(fields[0]), tuple(int(x, 16) for x in fields[1:7])
    except ValueError:
        return None
    return (NAMES.get(number, f"syscall {number}"), args)


def _is_socket(pid: int, fd: int) -> bool | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
    except OSError:
        return None


def blocked(
    pid: int,
    others: Sequence[int] | None = None,
    main: tuple[str, tuple[int, ...]] | None = None,
) -> Blocked | None:
    """What process `pid`'s main thread waits in (its event loop, when it has one), and
    how many of its other threads are busy; None when not readable. `others`: its other
    threads' ids when the caller knows them (else listed from /proc); `main`: the main
    thread's call when the caller has read it (readers.blockedreader). ~20-40 us for a
    one-thread process on the 2-core test machine."""
    got = main if main is not None else read_syscall(pid, pid)
    if got is None:
        return None
    call, args = got
    fd = nfds = sock = None
    if call in POLLS:
        nfds = args[1] if len(args) > 1 else None
    elif call in FD_FIRST and args:
        fd = args[0]
        sock = _is_socket(pid, fd)
    if others is None:
        try:
            others = [t for t in map(int, os.listdir(f"/proc/{pid}/task")) if t != pid]
        except OSError:
            others = []
    busy = 0
    if len(others) < MAX_THREADS:
        for tid in others:
            other = read_syscall(pid, tid)
            busy += other is not None and other[0] not in IDLE_WAITS
    return Blocked(call, fd, sock, nfds, busy)
