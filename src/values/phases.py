"""Where requests' time went: the three request phases a snapshot carries, per worker and
for the whole server (values.snapshot)."""

from __future__ import annotations

from dataclasses import dataclass

from plumbing.loghist import LogHist


@dataclass(frozen=True, slots=True)
class Phases:
    """Where requests' time went, cumulative since the worker (or the server)
    started; see plumbing.loghist for the histograms' precision. A phase that cannot be
    measured is None (never an empty histogram standing for zero).

    - queue: one value per accepted connection: from the arrival of its first request
      bytes (kernel timestamp) to accept(); 0 when the bytes came after accept().
    - server: one value per request: from the moment the server had the request (accept,
      or the read of its bytes, whichever is later) to its handler starting: a master's
      hand-off, event's parked or queued connection, a busy loop, earlier pipelined
      requests.
    - service: one value per request: handler start to the response handed to the kernel.
    """

    queue: LogHist | None = None
    server: LogHist | None = None
    service: LogHist | None = None

    def items(self) -> tuple[tuple[str, LogHist | None], ...]:
        return (("queue", self.queue), ("server", self.server), ("service", self.service))
