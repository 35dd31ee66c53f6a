"""Build the C and Go originals on first use, into a cache keyed by what went into them.

The key hashes the sources, the compiler's version and the flags, so an edited source
or a new compiler builds anew and an unchanged one never does. Builds go to a temporary
directory next to the cache entry and are renamed into place: two serverscope processes
building at once both succeed, one rename wins, and nothing is ever written to the source
tree. The cache is $XDG_CACHE_HOME/serverscope/build (~/.cache/serverscope/build).

Measured on the project's 2-core machine (Debian gcc 12, go1.19), empty caches: gcc -O2
of single.c or proc_spawn.c 0.3 s; `go build` of server.go 0.5-0.9 s, because Debian's
go1.19 ships the standard library precompiled (`-trimpath` forfeits that and took 25 s,
so it is not used; a Go >= 1.20 ships none and will take as long once). A cache hit costs
the compiler's `--version`/`version` once per process, then a stat.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from servers.supervisor import ServerError

from .registry import OriginalSpec

SRC = Path(__file__).resolve().parent
C_FLAGS = ("-O2", "-g", "-Wall")  # -g: `serverscope stack` names its functions and lines


class BuildError(ServerError):
    """A toolchain is missing or a build failed; the message is one line."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "serverscope"


def _go_env() -> dict[str, str]:
    """Go with nothing to download, whatever the environment says: no module proxy, and
    (Go >= 1.21) no toolchain fetched because GOTOOLCHAIN or a go.mod asks for a newer one."""
    env = dict(os.environ)
    env.setdefault("GOCACHE", str(cache_root() / "go-build"))
    env["GOPROXY"] = "off"  # standard library only
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = ""
    env["GO111MODULE"] = "auto"  # a lone file outside any module
    return env


@functools.cache
def _version(tool: str) -> str:
    go = os.path.basename(tool) == "go"
    args = [tool, "version"] if go else [tool, "--version"]
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=30, env=_go_env() if go else None
    )
    return out.stdout.splitlines()[0] if out.stdout else ""


def _sources(spec: OriginalSpec) -> list[Path]:
    main = SRC / spec.source
    if spec.kind == "c":
        return [main, SRC / "c" / "common.h"]
    return [main]


def _key(tool: str, flags: tuple[str, ...], sources: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(_version(tool).encode())
    h.update(repr(flags).encode())
    for p in sources:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def binary(spec: OriginalSpec) -> Path:
    """The built executable of a C or Go original, building it if the cache lacks it."""
    tool = spec.toolchain.path()
    if tool is None:
        raise BuildError(spec.missing_message())
    sources = _sources(spec)
    flags = C_FLAGS if spec.kind == "c" else ()
    exe_name = Path(spec.source).stem
    final = cache_root() / "build" / _key(tool, flags, sources)
    exe = final / exe_name
    if exe.exists():
        return exe
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        out = tmp / exe_name
        if spec.kind == "c":
            cmd = [tool, *flags, "-o", str(out), str(sources[0]), "-lm"]
            env = dict(os.environ)
        else:
            cmd = [tool, "build", *flags, "-o", str(out), str(sources[0])]
            env = _go_env()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=300)
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            raise BuildError(
                f"building {spec.name} failed ({' '.join(cmd[:2])}): "
                + (lines[0] if lines else f"exit code {done.returncode}")
            )
        try:
            os.rename(tmp, final)
        except OSError:
            if not exe.exists():  # not a lost race: something else is wrong
                raise
        return exe
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
