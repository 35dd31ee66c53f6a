"""The one seam between a session and what it runs: a Python model or an original.

A `Session` (and so `run`, `compare`, `seed`, recordings and the TUI) holds a `Server`:
start, stop, pids, url, running, root pid, config, describe. The Python models are a
`Supervisor` (scoreboard, owned sockets: `Sampler.for_supervisor`); the originals (C, Node,
Go, Apache, run for real) are an `OriginalServer` around `originals.launch.Original`,
watched from outside like any real server (`Sampler.attach(pid=root pid)`). `open_server`
and `sampler_for` are the only places that tell the two apart.

It is also what the layers above (the TUI, the commands) know of the servers: the models
and the originals with their knobs (`catalogue`, `model_spec`, the knob table `KNOBS`),
`ServerConfig`, and the errors a start can raise (`ConfigError`, `ServerError`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

import originals
from loadgen.stats import LoadStats
from originals.launch import Original
from plumbing.settings import Setting
from servers import models
from servers.config import ConfigError, ServerConfig
from servers.knobs import KNOB, KNOBS
from servers.models import COMMON_KNOBS, ModelSpec
from servers.supervisor import ServerError, Supervisor
from sources.sampler import Sampler

__all__ = [
    "KNOB",
    "KNOBS",
    "ConfigError",
    "ModelEntry",
    "Server",
    "ServerConfig",
    "ServerError",
    "catalogue",
    "entry",
    "model_spec",
    "open_server",
    "sampler_for",
]


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


@dataclass(frozen=True)
class ModelEntry:
    """A Python model or an original as a chooser or a list shows it: what it is, whether
    it can run here, the knobs it takes and its defaults."""

    spec: ModelSpec[Any]
    original: bool = False
    twin: str | None = None  # an original: the Python model that copies it
    tool: str | None = None  # an original: the command it needs (gcc, node, apache2...)
    package: str | None = None  # ...and the Debian package that has it
    present: bool = True  # the original's toolchain is installed here

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def summary(self) -> str:
        return self.spec.summary

    @property
    def own_knobs(self) -> tuple[Setting, ...]:
        """The knobs it takes beyond every model's, in the table's order."""
        return tuple(k for k in KNOBS if k.name in self.spec.knobs)

    def takes(self, name: str) -> bool:
        return self.spec.takes(name)

    def default(self, name: str) -> object:
        """Its default for a knob it takes (None: the server's own, unset)."""
        return self.spec.default(name)

    def default_text(self, name: str) -> str:
        """Its default in words: a figure, how this machine computes it, or whose it is."""
        if name in self.spec.said:
            return self.spec.said[name]
        value = self.default(name)
        if value is None:
            return "the server's own" if self.original else "none"
        return KNOB[name].show(value)

    @property
    def own_defaults(self) -> dict[str, object]:
        """Where its default for a knob every model takes is not the table's."""
        return {
            k: v
            for k, v in self.spec.defaults.items()
            if k in COMMON_KNOBS and k in KNOB and v != KNOB[k].default
        }


def catalogue() -> list[ModelEntry]:
    """The Python models in a lesson's order, then the seed's originals."""
    return [ModelEntry(spec) for spec in models.available()] + [
        _original(name) for name in originals.NAMES
    ]


def entry(name: str) -> ModelEntry:
    """One model or original by name (ConfigError naming them all for an unknown name)."""
    spec = model_spec(name)
    return _original(name) if originals.is_original(name) else ModelEntry(spec)


def _original(name: str) -> ModelEntry:
    o = originals.spec(name)
    t = o.toolchain
    return ModelEntry(o.model, True, o.twin, t.command, t.package, t.present)


def open_server(config: ServerConfig) -> Server:
    """The server for `config.model`, not yet started (ConfigError for unknown names)."""
    if originals.is_original(config.model):
        return OriginalServer(config)
    model_spec(config.model)
    return Supervisor(config)


def sampler_for(
    server: Server,
    *,
    load: Callable[[], LoadStats | None] | None = None,
    watch: Collection[int] = (),
) -> Sampler:
    """A Python model is read through its scoreboard (the /proc state of the pids in
    `watch` read every sample); an original from outside, by pid and its port (the Go
    original also listens for pprof, which is not the server's)."""
    if isinstance(server, Supervisor):
        return Sampler.for_supervisor(server, load=load, watch=watch)
    return Sampler.attach(pid=server.root_pid, port=server.port, load=load)
