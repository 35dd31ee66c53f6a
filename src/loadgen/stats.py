"""The load generator's live results, as every reader sees them (CLI, sampler, TUI).

A plain immutable value: the generator process publishes it, readers in other processes
get a copy. Latencies are in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plumbing.loghist import LogHist

ERROR_KINDS = ("refused", "connect_timeout", "reset", "read_timeout", "bad_response")
PHASE_NAMES = ("wait", "connect", "ttfb", "read", "resume")  # ClientPhases' fields, in order


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    max: float = 0.0
    count: int = 0  # samples behind these figures (0: no figures yet)


@dataclass(frozen=True, slots=True)
class ClientPhases:
    """Where a request's client-side latency went, as `hey` splits it, per request; the
    five add up to the request's latency (from its intended send time) to the microsecond.

    wait: intended send time -> the request starts on the connection that answers it
          (open loop: waiting for a free connection; closed loop: 0, but for a request
          sent again after its keep-alive connection closed under it unanswered: the
          time lost on that connection);
    connect: the TCP connect (0 on a reused keep-alive connection): the handshakes the
          connect figure (LoadStats.connect_ms, one per connection) counts;
    ttfb: request written -> first byte of the response;
    read: first byte -> last byte of the response;
    resume: last byte -> the generator's loop notes the request done (its own delay: near
          0 unless the generator is the bottleneck)."""

    wait: Percentiles = Percentiles()
    connect: Percentiles = Percentiles()
    ttfb: Percentiles = Percentiles()
    read: Percentiles = Percentiles()
    resume: Percentiles = Percentiles()


@dataclass(frozen=True, slots=True)
class LoadStats:
    time: float  # time.monotonic() when published
    elapsed: float  # seconds since the run started
    level: str  # preset name, or "custom"
    clients: int
    target_rate: float | None  # req/s for an open loop, None for a closed loop
    running: bool
    paused: bool
    requests: int  # completed requests (any status)
    status: dict[int, int] = field(default_factory=dict)  # by HTTP status code
    errors: dict[str, int] = field(default_factory=dict)  # by kind, see ERROR_KINDS
    in_flight: int = 0  # sent, neither answered nor failed (at the end: cut by the drain)
    open_connections: int = 0
    latency_ms: Percentiles = Percentiles()  # whole request, from its intended send time
    connect_ms: Percentiles = Percentiles()
    rps: float = 0.0  # completed in the last whole second
    rps_series: tuple[float, ...] = ()  # completed per second since the start
    sent: int = 0  # requests sent (completed + failed + in flight)
    backlog: int = 0  # open loop: requests due but waiting for a free connection
    series_start: int = 0  # second of rps_series[0]: live stats carry the last 600 s only
    engine: str = ""  # "fast" or "httpx"
    # waiting clients; see driver.py's docstring for exactly what:
    # completed requests plus every request still waiting, counted at its current age
    latency_all_ms: Percentiles = Percentiles()
    oldest_wait_ms: float | None = None  # age of the oldest request in flight (None: none)
    # connects that took about 1 s, 2 s, ... (SYN retransmits after accept-queue overflow)
    connect_seconds: tuple[int, ...] = ()
    # the generator watching itself (selfwatch.py): over the last second; None
    # when not measured (too early, unreadable, or a recording made before)
    generator_cpu: float | None = None  # share of one core its process used
    generator_busy: float | None = None  # its event loop on a CPU or waiting for one
    schedule_lag: float | None = None  # open loop: share of the due sends not sent
    generator_cpu_s: float | None = None  # CPU seconds of its process since the run began
    # "load generator is the bottleneck: ..." (the figures describe the client), or "send
    # schedule lags: ..." (open loop held back by busy connections); '' = neither
    bottleneck: str = ""
    bottleneck_share: float | None = None  # share of the run's readings that raised it
    # per-request client phases (wait + connect + ttfb + read + resume = latency_ms)
    phases: ClientPhases | None = None
    # completed requests' latency (as latency_ms) since the run started, in plumbing.loghist
    # buckets (6.25%): two readings give the latency of the requests in between, so a
    # recording can be judged window by window (judging.windows); None: not carried
    latency_hist: LogHist | None = None
    # the load's time is up: no more sends, the requests in flight get a moment to finish
    # (the end-of-load drain; `running` is False once it is over)
    draining: bool = False

    @property
    def generator_bound(self) -> bool:
        """The generator, not the server, limited the run (see `bottleneck`)."""
        return self.bottleneck.startswith("load generator is the bottleneck")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def waiting_latency(self) -> Percentiles:
        """The distribution to show: with the waiting requests when known (recordings made
        before they were carried have only the completed ones)."""
        return self.latency_all_ms if self.latency_all_ms.count else self.latency_ms
