"""The balancing policy a lab model runs, for the snapshot (ModelInfo.policy,
ListenerSample.steer): what its config started, and on a reuseport socket the CPU it
prefers, read back with getsockopt(SO_INCOMING_CPU) on the supervisor's copy.

A classic or eBPF program attached to a reuseport group cannot be read back (the
SO_ATTACH_REUSEPORT_* options are set-only), so `steer` names the config's."""

from __future__ import annotations

import socket

from servers.config import ServerConfig

SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)


def policy_of(config: ServerConfig) -> str | None:
    """The model's policy as started, in the flag's words; None: the model has none."""
    if config.model == "many_accepts":
        return f"accept-policy {config.accept_policy}"
    if config.model == "cluster":
        return f"policy {config.policy}"
    if config.model == "reuseport":
        said = f"steer {config.steer}" + (" + incoming-cpu" if config.incoming_cpu else "")
        return said + (" + migrate" if config.migrate else "")
    return None


def incoming_cpu(sock: socket.socket) -> int | None:
    """The CPU the socket prefers (SO_INCOMING_CPU); None: none set (-1) or unreadable."""
    try:
        cpu = sock.getsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU)
    except OSError:
        return None
    return cpu if cpu >= 0 else None


def steer_of(config: ServerConfig, sock: socket.socket) -> str | None:
    """How the reuseport group picks this socket: the config's program (or hash), and
    `incoming-cpu N` when the socket reads back a preferred CPU."""
    if config.model != "reuseport" or sock.fileno() < 0:
        return None
    cpu = incoming_cpu(sock)
    return config.steer + (f"+incoming-cpu {cpu}" if cpu is not None else "")
