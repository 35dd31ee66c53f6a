"""The remedy beside the problem: for a diagnosis, the setup that should cure it, both run
under the same load one after the other (a fresh server each), recorded, and judged by
the same engine as `serverscope diff` (judging.verdict).

REMEDIES is the table: one entry per (diagnosis, remedy), in order of preference. A remedy
names what it changes and the mechanism that change acts on; `watch` lists the verdict's
figures it should move (the headline shows those). A balancing knob is one entry (less-busy,
rotate: servers.accept_policy).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from judging.diagnosis import HOLD_WORDS, READING_WORDS
from loadgen.levels import LoadError, LoadLevel
from servers.config import ConfigError, ServerConfig
from servers.supervisor import ServerError
from values.codec import FormatError
from values.snapshot import Hold, Snapshot
from values.units import dur

from .scenarios import Fault
from .server import model_spec
from .summary import RunSummary

if TYPE_CHECKING:  # (numpy loads only when a verdict is made: not with the TUI)
    from judging.verdict_values import Verdict

Change = Callable[[ServerConfig], ServerConfig]
Applies = Callable[[ServerConfig], bool]

# what each kind of remedy should move (judging.figures keys), the headline's figures
SKEW = ("accept_top_share", "latency_p99")
STARVE = ("latency_p99", "queue", "queue_p99")
OVERFLOW = ("errors", "latency_p99", "queue")
MASTER = ("throughput", "server_p99", "latency_p99")
GIL = ("throughput", "latency_p99")
STALL = ("in_flight", "queue", "latency_p99")


def on(*models: str) -> Applies:
    return lambda cfg: cfg.model in models


def racing(cfg: ServerConfig) -> bool:
    """many_accepts whose woken workers race (plain epoll): a busy one can step back."""
    return cfg.model == "many_accepts" and not cfg.exclusive and cfg.accept_policy == "all"


def lifo(cfg: ServerConfig) -> bool:
    """many_accepts with EPOLLEXCLUSIVE: the first waiter takes all, unless it rotates."""
    return cfg.model == "many_accepts" and cfg.exclusive and cfg.accept_policy != "rotate"


def has_knob(name: str) -> Applies:
    return lambda cfg: name in model_spec(cfg.model).knobs


def everywhere(cfg: ServerConfig) -> bool:
    return True


def knobs(**changes: Any) -> Change:
    return lambda cfg: cfg.with_(**changes)


def to_model(model: str, workers: int | None = None) -> Change:
    """The same address, backlog and timeouts on `model` (its own defaults otherwise), with
    as many workers as before when both have the knob (or `workers`)."""

    def change(cfg: ServerConfig) -> ServerConfig:
        new = cfg.for_model(model)
        if "workers" in model_spec(model).knobs:
            n = workers or (cfg.workers if "workers" in model_spec(cfg.model).knobs else None)
            new = new.with_(workers=n)
        return new

    return change


def more_workers(cfg: ServerConfig) -> ServerConfig:
    """Twice the workers (MaxRequestWorkers for prefork)."""
    spec = model_spec(cfg.model)
    for knob in ("workers", "max_workers"):
        if knob in spec.knobs:
            now = getattr(cfg, knob) or spec.defaults.get(knob)
            return cfg.with_(**{knob: 2 * int(now)}) if isinstance(now, int) else cfg
    return cfg


def can_grow(cfg: ServerConfig) -> bool:
    return more_workers(cfg) != cfg


# how the starvation line says that clients' requests, not idle keep-alives, pin workers
_SLOW = (READING_WORDS, HOLD_WORDS[Hold.PARTIAL], HOLD_WORDS[Hold.SILENT])


def slow_requests(message: str) -> bool:
    """Requests arriving slowly (or not at all) hold the workers: a read timeout's case."""
    return any(words in message for words in _SLOW)


def keepalive_held(message: str) -> bool:
    """Idle keep-alive connections (or idle ones) hold them: a keep-alive timeout's case."""
    return not slow_requests(message)


def any_message(message: str) -> bool:
    return True


@dataclass(frozen=True)
class Remedy:
    rule: str  # the diagnosis it cures (judging.diagnosis rule ids)
    name: str  # what `fix --remedy` takes
    applies: Applies  # to the setup on screen
    change: Change
    watch: tuple[str, ...]  # the verdict's figures it should move
    does: str  # what it changes and the mechanism that acts on, in a line
    suits: Callable[[str], bool] = any_message  # the diagnosis line it answers


CORES = os.cpu_count() or 2
# the lab's watchdog: gunicorn's default is 30 s, and a server sets it above its longest
# request; in a run of a few seconds, 1 s shows what it does (the loops beat every 0.25 s)
WATCHDOG_S = 1.0


def no_watchdog(cfg: ServerConfig) -> bool:
    return cfg.model == "reuseport" and not cfg.worker_timeout


SHORT_READ = "header=2-4,MinRate=500 body=2,MinRate=500"

# fmt: off
REMEDIES: tuple[Remedy, ...] = (
    Remedy("accept_skew", "less-busy", racing, knobs(accept_policy="less-busy"), SKEW,
           "puma's wait_for_less_busy_worker: a serving worker waits 5 ms before it accepts"),
    Remedy("accept_skew", "reuseport", on("many_accepts"), to_model("reuseport"), SKEW,
           "a socket per worker (SO_REUSEPORT): the kernel hashes each connection to one"),
    Remedy("accept_skew", "cluster", on("many_accepts"), to_model("cluster"), SKEW,
           "only the master accepts, and deals connections to the workers round robin"),
    Remedy("accept_skew", "rotate", lifo, knobs(accept_policy="rotate"), SKEW,
           "nginx's answer to LIFO wake-ups: each worker re-arms the listener every 16 accepts"),
    Remedy("starvation", "event", on("prefork", "worker"), to_model("event"), STARVE,
           "keep-alive waits parked in the listener's event loop, not in a worker",
           keepalive_held),
    Remedy("starvation", "keepalive-1s", everywhere, knobs(keepalive_timeout=1.0), STARVE,
           "KeepAliveTimeout 1 s: an idle client frees its worker after 1 s, not 5",
           keepalive_held),
    Remedy("starvation", "read-timeout", has_knob("request_read_timeout"),
           knobs(request_read_timeout=SHORT_READ), STARVE,
           f"RequestReadTimeout {SHORT_READ}: a trickled request gets its 408 in seconds",
           slow_requests),
    Remedy("accept_queue_overflow", "more-workers", can_grow, more_workers, OVERFLOW,
           "twice the workers: the queue drains twice as fast while the CPU allows"),
    Remedy("accept_queue_overflow", "backlog", everywhere, knobs(backlog=4096), OVERFLOW,
           "a backlog of 4096 (net.core.somaxconn caps it): bursts queue, not dropped"),
    Remedy("master_bottleneck", "reuseport", on("cluster"), to_model("reuseport"), MASTER,
           "no master in the path: each worker accepts on its own SO_REUSEPORT socket"),
    Remedy("gil_cap", "processes", on("goroutines", "worker", "event"),
           to_model("reuseport", workers=CORES), GIL,
           f"one process per core ({CORES}, reuseport): each with a GIL of its own"),
    # a queue stranded behind its worker: stopped (stalled_owner) or busy, still running
    # (reuseport_backlog, e.g. a handler burning CPU): the same remedies
    *(
        remedy
        for rule in ("stalled_owner", "reuseport_backlog")
        for remedy in (
            Remedy(rule, "shared-queue", on("reuseport"), to_model("many_accepts"), STALL,
                   "one accept queue all the workers take from (many_accepts): a stalled "
                   "worker strands only the connections it had already accepted"),
            Remedy(rule, "watchdog", no_watchdog, knobs(worker_timeout=WATCHDOG_S), STALL,
                   f"gunicorn's --timeout: the master kills a worker silent for "
                   f"{WATCHDOG_S:g} s and forks a new one, which takes the queue from the "
                   "socket the master kept"),
            Remedy(rule, "migrate+watchdog", no_watchdog,
                   knobs(worker_timeout=WATCHDOG_S, migrate=True), STALL,
                   f"the watchdog kills the worker silent for {WATCHDOG_S:g} s; each worker "
                   "alone holding its socket (tcp_migrate_req = 1), the kernel hands its "
                   "queue to the others as it dies"),
        )
    ),
)
# fmt: on
RULES = tuple(dict.fromkeys(r.rule for r in REMEDIES))


class NothingToFix(ValueError):
    """No diagnosis seen has a remedy for this setup; the message says what was seen."""


def remedies_for(cfg: ServerConfig, rule: str, message: str = "") -> list[Remedy]:
    """The remedies for `rule` on `cfg`, the one suiting `message` first."""
    fit = [r for r in REMEDIES if r.rule == rule and r.applies(cfg)]
    return sorted(fit, key=lambda r: not r.suits(message))


def choose(
    cfg: ServerConfig, seen: Sequence[tuple[str, str]], name: str | None = None
) -> tuple[Remedy, str | None, str | None]:
    """(remedy, its rule's diagnosis line seen or None, the rule) for the diagnoses `seen`
    ((rule, message), the most telling first), or the remedy `name`. NothingToFix else."""
    if name is not None:
        named = [r for r in REMEDIES if r.name == name and r.applies(cfg)]
        if not named:
            fits = sorted({r.name for r in REMEDIES if r.applies(cfg)})
            raise NothingToFix(
                f"no remedy {name!r} for {cfg.model}; for it: {', '.join(fits) or 'none'}"
            )
        for rule, message in seen:
            match = [r for r in named if r.rule == rule]
            if match:
                return match[0], message, rule
        return named[0], None, named[0].rule
    for rule, message in seen:
        fit = remedies_for(cfg, rule, message)
        if fit:
            return fit[0], message, rule
    rules = ", ".join(rule for rule, _ in seen) or "none"
    raise NothingToFix(
        f"no diagnosis with a remedy for {cfg.model} was seen (seen: {rules}); remedies exist "
        f"for {', '.join(RULES)}; --remedy NAME runs one anyway"
    )


def seen_in(summary: RunSummary) -> list[tuple[str, str]]:
    """A run's diagnoses as (rule, first message), the longest on screen first."""
    ordered = sorted(summary.diagnoses, key=lambda d: -d.samples)
    return [(d.rule, d.message) for d in ordered]


RunFn = Callable[[ServerConfig, str, str], RunSummary]  # (config, record to, title)
START_ERRORS = (ServerError, ConfigError, LoadError)


@dataclass
class Outcome:
    """A fix: the diagnosis, the remedy, both runs and the verdict on their recordings."""

    before_config: ServerConfig
    level: LoadLevel
    paths: tuple[str, str]
    remedy: Remedy | None = None
    rule: str | None = None
    diagnosis: str | None = None  # its line as seen (None: --remedy without it)
    after_config: ServerConfig | None = None
    before: RunSummary | None = None
    after: RunSummary | None = None
    verdict: Verdict | None = None
    fault: Fault | None = None  # done to both runs, at the same time into the load
    problems: list[str] = field(default_factory=list)  # why there is no verdict
    notes: list[str] = field(default_factory=list)  # what to bear in mind reading it

    @property
    def ok(self) -> bool:
        return self.verdict is not None and not self.problems

    def headline(self) -> str:
        if self.verdict is None:
            return "; ".join(self.problems) or "no verdict"
        return self.verdict.headline(self.remedy.watch if self.remedy else ())

    def to_json_dict(self) -> dict[str, Any]:
        r = self.remedy
        return {
            "diagnosis": {"rule": self.rule, "message": self.diagnosis},
            "remedy": {"name": r.name, "does": r.does} if r else None,
            "before_config": _config(self.before_config),
            "after_config": _config(self.after_config) if self.after_config else None,
            "load": self.level.describe(),
            "fault": self.fault.describe() if self.fault else None,
            "duration_s": self.level.duration,
            "recordings": {"before": self.paths[0], "after": self.paths[1]},
            "before_run": self.before.to_json_dict() if self.before else None,
            "after_run": self.after.to_json_dict() if self.after else None,
            "verdict": self.verdict.to_json_dict() if self.verdict else None,
            "headline": self.headline(),
            "problems": self.problems,
            "notes": self.notes,
        }


def run_fix(
    config: ServerConfig,
    level: LoadLevel,
    paths: tuple[str, str],
    run: RunFn,
    *,
    seen: Sequence[tuple[str, str]] = (),
    remedy: str | None = None,
    judge: Callable[[str, str], Verdict] | None = None,
    fault: Fault | None = None,
) -> Outcome:
    """Run `config` under `level` recorded to paths[0], then its remedy recorded to
    paths[1], and judge the two recordings. The remedy answers a diagnosis in `seen`
    (the lab's screen) or `remedy` by name, chosen before any run; with neither, the
    before run's own diagnoses decide. Start-up failures and refusals end up in
    `problems`, never raised. `fault`: what `run` does to both runs (the same worker at
    the same second); a run that did not do it ends the fix without a verdict."""
    out = Outcome(config, level, paths, fault=fault)
    try:
        if seen or remedy:
            out.remedy, out.diagnosis, out.rule = choose(config, seen, remedy)
            checked(out.remedy.change(config))  # refused before any run, not after one
        out.before = run(config, paths[0], f"before: {config.model}")
        if not out.before.ok or not _faulted(out, "the before run", out.before):
            if not out.problems:
                out.problems.append(_failed("the before run", out.before))
            return out
        if out.remedy is None:
            out.remedy, out.diagnosis, out.rule = choose(config, seen_in(out.before))
        elif out.rule not in out.before.rules_seen():
            out.notes.append(
                f"the before run did not show {out.rule} this time: the verdict compares "
                "the two setups under this load"
            )
        out.after_config = checked(out.remedy.change(config))
        out.after = run(out.after_config, paths[1], f"after: {out.remedy.name}")
        if not out.after.ok or not _faulted(out, "the after run", out.after):
            if not out.problems:
                out.problems.append(_failed("the after run", out.after))
            return out
        note = stranded_note(out.before, out.after)
        if note:
            out.notes.append(note)
        if judge is None:
            from judging.verdict import judge_files

            judge = judge_files
        out.verdict = judge(*paths)
    except NothingToFix as e:
        out.problems.append(f"nothing to fix: {e}")
    except START_ERRORS as e:
        out.problems.append(f"could not start: {e}")
    except (OSError, FormatError, ValueError) as e:
        out.problems.append(f"could not judge the recordings: {e}")
    return out


def stranded_note(before: RunSummary, after: RunSummary) -> str | None:
    """When a run ended with requests unanswered (a stopped worker's), its latency figures
    leave them out: said, with the client's p99 that counts them at their age."""
    cut = [s.result.stats.in_flight if s.result is not None else 0 for s in (before, after)]
    if not any(cut):
        return None
    b, a = (dur(s.latency_all.p99) for s in (before, after))
    return (
        f"{cut[0]} then {cut[1]} requests were unanswered when the runs ended: latency "
        f"counts completed requests only; with those at their age, latency p99 {b} -> {a} "
        "(untested)"
    )


PAUSE_AT_S = 1.0  # when the lab's `f` pauses the worker in both runs


def paused_fault(snap: Snapshot | None, paused: Collection[int]) -> Fault | None:
    """The pause on screen (a worker the user stopped with `p`) as a Fault that both runs of
    a fix do PAUSE_AT_S into their load: the stall is the setup's, not only the lab's."""
    if snap is None:
        return None
    slots = sorted({w.slot for w in snap.workers if w.pid in paused and w.slot is not None})
    return Fault("pause", slot=slots[0], after_s=PAUSE_AT_S) if slots else None


def checked(cfg: ServerConfig) -> ServerConfig:
    """`cfg` as its model checks it (ConfigError: one line, e.g. --migrate's sysctl)."""
    check = model_spec(cfg.model).check
    if check is not None:
        check(cfg)
    return cfg


def _faulted(out: Outcome, what: str, s: RunSummary) -> bool:
    """The run did the fault (if any); a problem saying why not else."""
    f = out.fault
    why = None if f is None else f.missed(s.faults)
    if f is None or why is None:
        return True
    out.problems.append(f"{what} did not {f.describe()} ({why}): not the same fault")
    return False


def _failed(what: str, s: RunSummary) -> str:
    if s.interrupted:
        return f"{what} was interrupted"
    return f"{what} failed: {s.server_error or s.load_error or 'no result'}"


def _config(cfg: ServerConfig) -> dict[str, Any]:
    base = ServerConfig()
    return {
        "model": cfg.model,
        **{
            k: v
            for k, v in vars(cfg).items()
            if k not in ("model", "port", "host") and v != getattr(base, k)
        },
    }
