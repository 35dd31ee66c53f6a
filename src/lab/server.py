"""The one seam between a session and what it runs: a Python model or an original.

A `Session` (and so `run`, `compare`, `seed`, recordings and the TUI) holds a `Server`:
start, stop, pids, url, running, root pid, config, describe. The Python models are a
`Supervisor` (scoreboard, owned sockets: `Sampler.for_supervisor`); the originals (C, Node,
Go, Apache, run for real) are an `OriginalServer` around `originals.launch.Original`,
watched from outside like any real server (`Sampler.attach(pid=root pid)`). `open_server`
and `sampler_for` are the only places that tell the two apart.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol

import originals
from loadgen.stats import LoadStats
from originals.launch import Original
from servers import models
from servers.config import ConfigError, ServerConfig
from servers.models import ModelSpec
from servers.supervisor import Supervisor
from sources.sampler import Sampler


class Server(Protocol):
    """What a session needs of a running server, whoever wrote it."""

    config: ServerConfig
    port: int

    def start(self) -> Any: ...
    def begin_stop(self) -> None: ...  # send the stop signal, return at once (any thread)
    def stop(self) -> None: ...
    def pids(self) -> list[int]: ...
    @property
    def running(self) -> bool: ...
    @property
    def root_pid(self) -> int: ...
    @property
    def url(self) -> str: ...
    @property
    def local_url(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...


class OriginalServer(Original):
    """An original as a `Server`: it listens on loopback, so its local URL is its URL."""

    @property
    def local_url(self) -> str:
        return self.url

    @property
    def exit_code(self) -> int | None:
        return self.watchdog.poll() if self.watchdog is not None else None


class ModelServer(Supervisor):
    """A Python model as a `Server` (the Supervisor unchanged, plus its exit code)."""

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None


def model_spec(name: str) -> ModelSpec[Any]:
    """The knobs and defaults of a Python model or an original, by name (ConfigError
    naming both kinds for an unknown name: the originals are accepted everywhere too)."""
    if originals.is_original(name):
        return originals.spec(name).model
    if name not in models.MODEL_NAMES:
        raise ConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(models.MODEL_NAMES)}, "
            f"or an original: {', '.join(originals.NAMES)}"
        )
    return models.spec(name)


def open_server(config: ServerConfig) -> Server:
    """The server for `config.model`, not yet started (ConfigError for unknown names)."""
    if originals.is_original(config.model):
        return OriginalServer(config)
    model_spec(config.model)
    return ModelServer(config)


def sampler_for(
    server: Server,
    *,
    load: Callable[[], LoadStats | None] | None = None,
    watch: Collection[int] = (),
) -> Sampler:
    """A Python model is read through its scoreboard (the /proc state of the pids in
    `watch` read every sample); an original from outside, by pid."""
    if isinstance(server, Supervisor):
        return Sampler.for_supervisor(server, load=load, watch=watch)
    return Sampler.attach(pid=server.root_pid, load=load)
