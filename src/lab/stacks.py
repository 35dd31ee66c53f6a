"""A sampled worker's stack (readers.stacks), for the lab's automatic captures and the
TUI's `d`: a thread worker's own thread, a process worker's every thread."""

from __future__ import annotations

from readers.stacks import StackCapture, capture

AUTO_TIMEOUT_S = 5.0  # an automatic capture gives up after this long (py-spy takes ~40 ms)


def worker_stack(
    pid: int, tid: int, *, timeout: float = AUTO_TIMEOUT_S, native: bool = False
) -> StackCapture:
    """The stack of the worker (pid, tid): only thread `tid` when it is not the process's
    main thread (a thread worker), else all of the process's threads. `native`: with the
    native frames too (py-spy --native stops the process while it reads: 34-74 ms seen)."""
    return capture(pid, tid if tid != pid else None, timeout=timeout, native=native)
