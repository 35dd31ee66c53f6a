"""`--cpu-limit CORES` for the commands that start a lab server (`serverscope`, `run`):
the server runs in a CPU-limited cgroup of its own (lab.cpu_limit), removed at exit."""

from __future__ import annotations

import argparse
import math
from typing import Any

MIN_CORES = 0.01  # the kernel's smallest quota: 1 ms per 100 ms period
MAX_CORES = 1024.0


def cores(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number of cores (e.g. 0.5), got {text!r}")
    if not MIN_CORES <= value <= MAX_CORES:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_CORES:g} and {MAX_CORES:g} cores, got {text}"
        )
    return value


def add_arg(p: Any) -> None:
    p.add_argument(
        "--cpu-limit",
        type=cores,
        metavar="CORES",
        help="run the server in a cgroup of its own limited to CORES of CPU (e.g. 0.5), "
        "to see throttling as a container would; needs root; the cgroup is removed at exit",
    )
