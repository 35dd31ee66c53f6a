"""The seed's own systems, written by the project and run for real beside the Python models.

The user's document compares nine real systems; serverscope models each in Python
(`servers`). This package ships the originals themselves: C `single` and `proc_spawn`,
Node `simple_cluster.js` and `many_accepts.js`, a Go net/http server, and Apache httpd
per MPM with a generated config. They serve the same endpoints as the models (`GET /`,
`GET /work?cpu_ms=&io_ms=&bytes=`) and take the same knobs where the original has them.

Toolchains come from the distribution (gcc, nodejs, golang-go, apache2); C and Go are
built on first use into a cache keyed by the sources' hash (`build.py`). `launch.py`
starts one on a loopback port under a watchdog that stops its whole process tree however
serverscope exits, SIGKILL included.
"""

from .registry import NAMES, OriginalSpec, is_original, spec


def serve(cfg: object) -> int:
    """`serverscope serve NAME` for an original (imported late: the CLI loads this module)."""
    from .serve import serve as _serve

    return _serve(cfg)  # type: ignore[arg-type]


__all__ = ["NAMES", "OriginalSpec", "is_original", "serve", "spec"]
