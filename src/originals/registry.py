"""The originals: names, origin in the seed, knobs, and the toolchain each needs.

Knobs are resolved by the models' own `ModelSpec.resolve`, so an original refuses the
knobs it does not have and fills its defaults exactly as a Python model does.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from servers.config import ConfigError, ServerConfig, check_range
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
        raise ConfigError(f"{cfg.model} has no --max-keepalive-requests (Go's net/http has none)")


def _check_apache(cfg: ServerConfig) -> None:
    for flag, value in (
        ("--start-servers", cfg.start_servers),
        ("--min-spare", cfg.min_spare),
        ("--max-spare", cfg.max_spare),
        ("--max-workers", cfg.max_workers),
        ("--threads-per-child", cfg.threads_per_child),
    ):
        if value is not None:
            check_range(flag, value, 1, 20000)
    if cfg.async_factor is not None:
        check_range("--async-factor", cfg.async_factor, 0.01, 100)
    if cfg.timeout < 1:
        raise ConfigError(f"{cfg.model}: Apache's Timeout is in whole seconds; use --timeout >= 1")


_APACHE_POOL = frozenset({"start_servers", "min_spare", "max_spare", "max_workers"})

_SPECS = (
    OriginalSpec(
        ModelSpec(
            name="c:single",
            summary="the C original: one process, accept, serve to the end, accept the next",
            origin="C single",
        ),
        GCC,
        "c",
        "c/single.c",
        "single",
    ),
    OriginalSpec(
        ModelSpec(
            name="c:proc_spawn",
            summary="the C original: N forked processes (250), each blocking in accept()",
            origin="C proc_spawn",
            knobs=frozenset({"workers"}),
            defaults={"workers": 250},
        ),
        GCC,
        "c",
        "c/proc_spawn.c",
        "proc_spawn",
    ),
    OriginalSpec(
        ModelSpec(
            name="node:simple_cluster",
            summary="the Node original: cluster, the primary accepts and hands out round robin",
            origin="Node simple_cluster.js",
            knobs=frozenset({"workers"}),
            defaults={"workers": 4, "max_keepalive_requests": 0},
        ),
        NODE,
        "node",
        "node/simple_cluster.js",
        "cluster",
    ),
    OriginalSpec(
        ModelSpec(
            name="node:many_accepts",
            summary="the Node original: workers accept on the master's socket; the OS picks",
            origin="Node many_accepts.js",
            knobs=frozenset({"workers"}),
            defaults={"workers": 4, "max_keepalive_requests": 0},
        ),
        NODE,
        "node",
        "node/many_accepts.js",
        "many_accepts",
    ),
    OriginalSpec(
        ModelSpec(
            name="go:server",
            summary="the Go original: net/http, a goroutine per connection, GOMAXPROCS = cores",
            origin="Go net/http server",
            knobs=frozenset({"workers"}),
            defaults={"workers": os.cpu_count() or 1, "max_keepalive_requests": 0},
            check=_no_keepalive_cap,
        ),
        GO,
        "go",
        "go/server.go",
        "goroutines",
    ),
    OriginalSpec(
        ModelSpec(
            name="apache:prefork",
            summary="Apache httpd, prefork MPM (mod_lua serves /work), generated config",
            origin="Apache httpd prefork MPM",
            knobs=_APACHE_POOL,
            check=_check_apache,
        ),
        APACHE,
        "apache",
        "apache/app.lua",
        "prefork",
    ),
    OriginalSpec(
        ModelSpec(
            name="apache:worker",
            summary="Apache httpd, worker MPM (mod_lua serves /work), generated config",
            origin="Apache httpd worker MPM",
            knobs=_APACHE_POOL | {"workers", "threads_per_child"},
            check=_check_apache,
        ),
        APACHE,
        "apache",
        "apache/app.lua",
        "worker",
    ),
    OriginalSpec(
        ModelSpec(
            name="apache:event",
            summary="Apache httpd, event MPM (mod_lua serves /work), generated config",
            origin="Apache httpd event MPM",
            knobs=_APACHE_POOL | {"workers", "threads_per_child", "async_factor"},
            check=_check_apache,
        ),
        APACHE,
        "apache",
        "apache/app.lua",
        "event",
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


def list_lines() -> list[str]:
    """`serve --list` rows: name, what it is, its origin, and whether it can run here."""
    width = max(len(n) for n in NAMES)
    out = []
    for s in _SPECS:
        t = s.toolchain
        have = "present" if t.present else f"MISSING: apt-get install {t.package}"
        out.append(
            f"{s.name:<{width}}  {s.model.summary}  [{s.model.origin}; model {s.twin}; "
            f"{t.command}: {have}]"
        )
    return out
