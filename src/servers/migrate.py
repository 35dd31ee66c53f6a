"""reuseport --migrate: a worker that exits hands its queued connections to the others.

With net.ipv4.tcp_migrate_req = 1 (Linux 5.14+), closing a listening socket of a reuseport
group moves the connections in its accept queue (and its half-open ones) to another socket
of the group, picked by the group's hash, instead of resetting them. The socket closes
only when its last file reference goes: so with --migrate neither the supervisor nor the
master keeps a copy, each worker holds its own socket alone, and a restarted worker joins
the group with a fresh one.

The sysctl is per network namespace. serverscope reads it and never writes it: changing
the host's would change every server's behaviour on the machine, silently. Where it is
not 1, --migrate is refused with one line saying how to run in a namespace of its own
(rather than run without migration and show a rescue that cannot happen).
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import sys

from .config import ConfigError

SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"
# "$@": the command follows as sh's arguments, so it needs no quoting inside the script
IN_A_NAMESPACE = (
    "(as root) unshare --net sh -c 'ip link set lo up && sysctl -qw "
    'net.ipv4.tcp_migrate_req=1 && exec "$@"\' sh '
)


def this_command(argv: list[str] | None = None) -> str:
    """The user's serverscope command line when it asked for --migrate itself (so the hint
    runs as written), else a placeholder (a chooser in the lab asked for it)."""
    argv = sys.argv if argv is None else argv
    if argv and os.path.basename(argv[0]) == "serverscope" and "--migrate" in argv:
        return shlex.join(["serverscope", *argv[1:]])
    return "serverscope ..."


def unavailable(path: str = SYSCTL) -> str | None:
    """Why --migrate cannot run here, in one line; None when it can."""
    try:
        with open(path) as f:
            value = f.read().strip()
    except FileNotFoundError:
        return (
            f"--migrate needs net.ipv4.tcp_migrate_req (Linux 5.14+); this kernel "
            f"({platform.release()}) has none"
        )
    except OSError as e:
        return f"--migrate: cannot read net.ipv4.tcp_migrate_req: {e.strerror or e}"
    if value == "1":
        return None
    return (
        f"--migrate needs net.ipv4.tcp_migrate_req = 1 in this network namespace (it is "
        f"{value}); serverscope does not change it for the whole machine: run it in a "
        f"namespace of its own: {IN_A_NAMESPACE}{this_command()}"
    )


def check(workers: int) -> None:
    """ConfigError with the one line when --migrate cannot run (read where it will run)."""
    if workers < 2:
        raise ConfigError("--migrate needs --workers 2 or more: a queue moves to another socket")
    why = unavailable()
    if why is not None:
        raise ConfigError(why)


def join(address: tuple, backlog: int) -> socket.socket:
    """A fresh listening socket in the reuseport group on `address` (a restarted worker's:
    the kernel lets a socket of the same user join the group)."""
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
