"""The originals: names, origin in the seed, knobs, and the toolchain each needs.

Knobs are resolved by the models' own `ModelSpec.resolve`, so an original refuses the
knobs it does not have and fills its defaults exactly as a Python model does; its
defaults are its twin model's (the model copies the original's, not the other way).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from servers import models
from servers.config import ConfigError, ServerConfig
from servers.knobs import KNOB
from servers.models import ModelSpec


@dataclass(frozen=True)
class Toolchain:
    command: str  # what must be on PATH (sbin included)
    package: str  # the Debian package that provides it
    what: str  # for messages: "a C compiler"

    def path(self) -> str | None:
        search = os.environ.get("PATH", os.defpath) + os.pathsep + "/usr/sbin:/sbin"
        return shutil.which(self.command, path=search)

    @property
    def present(self) -> bool:
        if self.path() is None:
            return False
        if self.command == "apache2":  # the originals need its mod_lua and mod_status too
            from .apache import modules_dir

            return modules_dir() is not None
        return True


GCC = Toolchain("gcc", "gcc", "a C compiler")
NODE = Toolchain("node", "nodejs", "Node.js")
GO = Toolchain("go", "golang-go", "the Go compiler")
APACHE = Toolchain("apache2", "apache2", "Apache httpd")


@dataclass(frozen=True)
class OriginalSpec:
    model: ModelSpec  # name, summary, origin, knobs, defaults, checks
    toolchain: Toolchain
    kind: str  # "c", "node", "go", "apache"
    source: str  # file under this package: c/single.c, node/many_accepts.js, ...
    twin: str  # the Python model that copies it

    @property
    def name(self) -> str:
        return self.model.name

    def resolve(self, cfg: ServerConfig) -> ServerConfig:
        return self.model.resolve(cfg)

    def missing_message(self) -> str:
        t = self.toolchain
        return (
            f"{self.name} needs {t.what} ({t.command}), which is not installed: "
            f"install the Debian package {t.package} (apt-get install {t.package})"
        )


def _no_keepalive_cap(cfg: ServerConfig) -> None:
    if cfg.max_keepalive_requests not in (None, 0):
        flag = KNOB["max_keepalive_requests"].option
        raise ConfigError(f"{cfg.model} has no {flag} (Go's net/http has none)")


def _check_apache(cfg: ServerConfig) -> None:
    if cfg.timeout < 1:
        flag = KNOB["timeout"].option
        raise ConfigError(f"{cfg.model}: Apache's Timeout is in whole seconds; use {flag} >= 1")


_APACHE_POOL = frozenset({"start_servers", "min_spare", "max_spare", "max_workers"})


def _original(
    name: str,
    summary: str,
    twin: str,
    toolchain: Toolchain,
    source: str,
    *,
    knobs: frozenset[str] = frozenset(),
    own: frozenset[str] = frozenset(),
    check: Callable[[ServerConfig], None] | None = None,
) -> OriginalSpec:
    """An original takes its twin model's default for every knob both take, but those in
    `own`, which it leaves to the real server's own default (Apache worker's --workers:
    unset, its pool adapts as Apache's does)."""
    copied = models.spec(twin)
    takes = knobs | models.COMMON_KNOBS
    defaults = {k: v for k, v in copied.defaults.items() if k in takes and k not in own}
    spec: ModelSpec[None] = ModelSpec(
        name=name,
        summary=summary,
        origin=copied.origin,
        knobs=knobs,
        defaults=defaults,
        check=check,
        said={k: v for k, v in copied.said.items() if k in defaults},
    )
    return OriginalSpec(spec, toolchain, name.split(":")[0], source, twin)


_SPECS = (
    _original(
        "c:single",
        "the C original: one process, accept, serve to the end, accept the next",
        "single",
        GCC,
        "c/single.c",
    ),
    _original(
        "c:proc_spawn",
        "the C original: N forked processes, each blocking in accept()",
        "proc_spawn",
        GCC,
        "c/proc_spawn.c",
        knobs=frozenset({"workers"}),
    ),
    _original(
        "node:simple_cluster",
        "the Node original: cluster, the primary accepts and hands out round robin",
        "cluster",
        NODE,
        "node/simple_cluster.js",
        knobs=frozenset({"workers"}),
    ),
    _original(
        "node:many_accepts",
        "the Node original: workers accept on the master's socket; the OS picks",
        "many_accepts",
        NODE,
        "node/many_accepts.js",
        knobs=frozenset({"workers"}),
    ),
    _original(
        "go:server",
        "the Go original: net/http, a goroutine per connection, GOMAXPROCS = cores",
        "goroutines",
        GO,
        "go/server.go",
        knobs=frozenset({"workers"}),
        check=_no_keepalive_cap,
    ),
    _original(
        "apache:prefork",
        "Apache httpd, prefork MPM (mod_lua serves /work), generated config",
        "prefork",
        APACHE,
        "apache/app.lua",
        knobs=_APACHE_POOL,
        check=_check_apache,
    ),
    _original(
        "apache:worker",
        "Apache httpd, worker MPM (mod_lua serves /work), generated config",
        "worker",
        APACHE,
        "apache/app.lua",
        knobs=_APACHE_POOL | {"workers", "threads_per_child"},
        own=frozenset({"workers"}),
        check=_check_apache,
    ),
    _original(
        "apache:event",
        "Apache httpd, event MPM (mod_lua serves /work), generated config",
        "event",
        APACHE,
        "apache/app.lua",
        knobs=_APACHE_POOL | {"workers", "threads_per_child", "async_factor"},
        own=frozenset({"workers"}),
        check=_check_apache,
    ),
)

ORIGINALS: dict[str, OriginalSpec] = {s.name: s for s in _SPECS}
NAMES = tuple(ORIGINALS)


def is_original(name: str) -> bool:
    return ":" in name


def spec(name: str) -> OriginalSpec:
    try:
        return ORIGINALS[name]
    except KeyError:
        raise ConfigError(f"unknown original {name!r}; choose one of: {', '.join(NAMES)}") from None
