"""Run a command in a network namespace of its own: loopback up, no other interface, no route.

Nothing a command does there can leave the machine, and a port it binds (8000, say) is free
whatever else runs on the host. `unshare --net` as root; otherwise a user namespace too
(`--user --map-root-user`) where the kernel allows it. `ip` (iproute2) brings loopback up.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

LO_UP = 'ip link set lo up && exec "$@"'


@functools.cache
def prefix() -> tuple[list[str] | None, str]:
    """(the argv prefix that runs a command in a fresh namespace with loopback up, None when
    none can be made here; and why not)."""
    if shutil.which("unshare") is None:
        return None, "needs unshare (Debian package util-linux)"
    if shutil.which("ip") is None:
        return None, "needs ip (Debian package iproute2)"
    tries = [["unshare", "--net"]] if os.geteuid() == 0 else []
    tries.append(["unshare", "--user", "--map-root-user", "--net"])
    for head in tries:
        argv = [*head, "--", "sh", "-c", LO_UP, "sh"]
        ok = subprocess.run([*argv, "true"], capture_output=True, timeout=30).returncode == 0
        if ok:
            return argv, ""
    return None, "cannot make a network namespace here (unshare --net was refused)"


def argv(*command: str) -> list[str]:
    head, why = prefix()
    if head is None:
        raise RuntimeError(why)
    return [*head, *command]
