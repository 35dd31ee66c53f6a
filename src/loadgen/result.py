"""The result of a whole run: the final live figures plus the full histograms."""

from __future__ import annotations

from dataclasses import dataclass

from .histogram import Histogram
from .levels import LoadLevel
from .stats import ERROR_KINDS, PHASE_NAMES, LoadStats, Percentiles


@dataclass(frozen=True)
class LoadResult:
    url: str
    engine: str
    level: LoadLevel  # the level in force at the end
    stats: LoadStats  # the last live figures (running=False)
    latency: Histogram  # whole request, from its intended send time (us buckets)
    connect: Histogram  # connect time of every new connection
    elapsed: float  # seconds the run issued requests for (plus the final drain)
    rps_series: tuple[float, ...]  # completed per second, from the start, whole seconds
    error: str | None = None  # why the run stopped early, if it did
    # completed requests plus those cut at the end (and unsent tickets), at their age then
    latency_all: Histogram | None = None
    # per-request client phases of completed requests, in stats.PHASE_NAMES order
    # (wait, connect, ttfb, read, resume); () from a generator that did not split them
    phases: tuple[Histogram, ...] = ()

    @property
    def requests(self) -> int:
        return self.stats.requests

    @property
    def rps(self) -> float:
        return self.stats.requests / self.elapsed if self.elapsed > 0 else 0.0

    def to_json_dict(self) -> dict[str, object]:
        def pct(p: Percentiles) -> dict[str, float]:
            return {"p50": p.p50, "p90": p.p90, "p99": p.p99, "p999": p.p999, "max": p.max}

        s = self.stats
        return {
            "url": self.url,
            "engine": self.engine,
            "level": self.level.name,
            "level_detail": self.level.describe(),
            "clients": s.clients,
            "target_rate": s.target_rate,
            "duration_s": round(self.elapsed, 3),
            "requests": s.requests,
            "sent": s.sent,  # = requests + errors + in_flight
            "in_flight": s.in_flight,  # sent, still unanswered when the run was cut
            "oldest_wait_ms": _ms(s.oldest_wait_ms),
            "unsent": s.backlog,  # open loop: scheduled but still waiting at the end
            "rps": round(self.rps, 2),
            "errors": {k: s.errors.get(k, 0) for k in ERROR_KINDS},
            "status": {str(k): v for k, v in sorted(s.status.items())},
            "latency_ms": {**pct(self.latency.percentiles()), "mean": self.latency.mean_ms},
            "latency_incl_waiting_ms": {
                **pct(self.latency_all.percentiles()),
                "mean": self.latency_all.mean_ms,
                "count": self.latency_all.count,
            }
            if self.latency_all is not None
            else None,
            "connect_ms": {
                **pct(self.connect.percentiles()),
                "mean": self.connect.mean_ms,
                "count": self.connect.count,
            },
            # where each request's latency went; the five add up to latency_ms's values
            # request by request (so their means add up to its mean), not percentile by
            # percentile; None: not split
            "phases_ms": {
                name: {**pct(h.percentiles()), "mean": h.mean_ms}
                for name, h in zip(PHASE_NAMES, self.phases, strict=True)
            }
            if self.phases
            else None,
            "rps_series": list(self.rps_series),
            "error": self.error,
            "generator": {
                "cpu_s": _ms(s.generator_cpu_s),
                "cpu_us_per_request": round(s.generator_cpu_s * 1e6 / s.requests, 2)
                if s.generator_cpu_s is not None and s.requests
                else None,
                # "load generator is the bottleneck: ..." or "send schedule lags: ..." (None:
                # neither), whether the generator limited the run, and the share of the
                # run's readings (5 a second) that said so
                "bottleneck": s.bottleneck or None,
                "generator_bound": s.generator_bound,
                "bottleneck_share": _ms(s.bottleneck_share),
            },
        }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
