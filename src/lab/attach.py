"""A server serverscope did not start, watched: `serverscope attach` in every form.

    att = Attachment.open(port=8080, window_s=5.0)       # AttachError: nothing to attach to
    att.start_load(preset("burst"))                      # --load: serverscope's generator
    att.record("attach.jsonl")                           # --record
    att.watch.observers.append(exporter.update)          # --export, --json, --table
    att.watch.run(period, stop)                          # or the TUI: att.sample() per period
    att.close()                                          # ours only: the server keeps running

The same `Watch` as the lab's models (read, judge, log, record, observe) over the attach
source; what it adds is what is ours beside somebody else's server (the --load generator;
the source's bpftrace and mod_status poller close with its sampler) and the end of the
watch when that server exits. Closing stops only what serverscope started.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from judging.analysis import DEFAULT_WINDOW_S
from judging.diagnosis import MIN_SPAN_S
from loadgen.levels import LoadError, LoadLevel
from loadgen.runner import LoadRunner
from readers import accepts_bpf
from sources.attach_source import NOT_ALLOWED
from sources.sampler import AttachError, Sampler
from values.recording import RecordingWriter
from values.snapshot import Snapshot

from .autocapture import AutoCapture
from .watch import DEFAULT_PERIOD, Watch

__all__ = ["NOT_ALLOWED", "ONCE_SPAN_S", "AttachError", "Attachment"]

ONCE_INTERVAL_S = 0.5  # a one-shot CPU % is measured over at least this long ...
# ... and its diagnoses over as long as their rules need (starvation: 1 s of samples)
ONCE_SPAN_S = max(ONCE_INTERVAL_S, *MIN_SPAN_S.values())


def too_short(window_s: float) -> list[str]:
    """The rules a judging window of `window_s` is too short for, as "rule needs N s"."""
    return [f"{rule} needs {need:g} s" for rule, need in MIN_SPAN_S.items() if window_s < need]


def starts_bpftrace(exact_accepts: bool | None) -> bool:
    """Whether opening an Attachment with `exact_accepts` starts bpftrace (None: when
    root, as sources.attach_source decides), which takes seconds before the first sample."""
    exact = os.geteuid() == 0 if exact_accepts is None else exact_accepts
    return exact and accepts_bpf.unavailable() is None


def _greeting(snap: Snapshot) -> str:
    m = snap.model
    what = f"{m.server or m.name} (root pid {m.root_pid})" if m else "server"
    return f"attached to {what}"


class Attachment:
    """Somebody else's server watched through a `Watch`, with what we start beside it."""

    def __init__(
        self,
        sampler: Sampler,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        period: float = DEFAULT_PERIOD,
        pid: int | None = None,
        port: int | None = None,
        autocapture: AutoCapture | None = None,
    ) -> None:
        self.sampler = sampler
        self.period = period  # seconds between samples (the TUI's pace)
        self.target = {"pid": pid, "port": port}  # as the user named it (a recording's meta)
        self.watch = Watch(sampler, window_s=window_s, greeting=_greeting, autocapture=autocapture)
        self.runner: LoadRunner | None = None
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        *,
        pid: int | None = None,
        port: int | None = None,
        status_url: str | None = "auto",
        exact_accepts: bool | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        period: float = DEFAULT_PERIOD,
        autocapture: AutoCapture | None = None,
        **options: Any,
    ) -> Attachment:
        """Attach by pid, port or both (AttachError, one line for the user, when there is
        nothing to attach to). `status_url`: Apache's mod_status, "auto" or None; see
        `sources.attach_source` for `exact_accepts`; `autocapture` takes stuck workers'
        stacks (None: none taken); `options` (e.g. `netns`) go to `Sampler.attach`."""
        sampler = Sampler.attach(
            pid=pid, port=port, status_url=status_url, exact_accepts=exact_accepts, **options
        )
        try:
            return cls(
                sampler,
                window_s=window_s,
                period=period,
                pid=pid,
                port=port,
                autocapture=autocapture,
            )
        except BaseException:  # Ctrl-C in start-up too: bpftrace is not left running
            sampler.close()
            raise

    @property
    def ports(self) -> list[int]:
        """The TCP ports the server listens on (as the source found them)."""
        return list(getattr(self.sampler.source, "ports", []))

    @property
    def not_a_server(self) -> str | None:
        """Why the attached tree looks like no server: it listens on no TCP port (and its
        sockets were readable); else None."""
        src = self.sampler.source
        if self.ports or getattr(src, "ports_hidden", True):
            return None
        who = f"pid {getattr(src, 'root', '?')} ({getattr(src, 'name', '?')})"
        return f"{who} listens on no TCP port: not a server?"

    @property
    def ended(self) -> str | None:
        """Why watching stopped (the server exited), else None."""
        return self.watch.ended

    @property
    def closed(self) -> bool:
        return self._closed

    def start_load(self, level: LoadLevel) -> LoadRunner:
        """Drive serverscope's load generator at the server's first port on 127.0.0.1
        (LoadError when it listens on none). A real server has no /work endpoint, so
        the level's request costs are dropped (GET /); its duration bounds it, and
        LoadRunner refuses a non-loopback URL."""
        ports = self.ports
        if not ports:
            raise LoadError("--load: the server listens on no TCP port")
        ns = getattr(self.sampler.source, "netns", None)
        if ns is not None and not ns.own:  # our 127.0.0.1 is not the server's
            raise LoadError(f"--load: the server is in another network namespace ({ns.path})")
        level = level.with_(cpu_ms=0.0, io_ms=0.0, bytes=0)
        self.runner = LoadRunner(f"http://127.0.0.1:{ports[0]}/", level).start()
        self.sampler.load = self.runner.stats
        return self.runner

    def record(self, path: str) -> None:
        """Write every snapshot delivered from now on to `path` (JSON Lines)."""
        self.watch.recorder = RecordingWriter(path, meta={"attach": dict(self.target)})

    def sample(self) -> Snapshot | None:
        """One snapshot through the watch; None once the server is gone (said once in the
        event log, and in `ended`) or the attachment closed."""
        if self._closed or self.watch.ended:
            return None
        try:
            return self.watch.sample()
        except RuntimeError as e:  # the attached server exited
            self.watch.ended = str(e)
            self.watch.log("death", f"server gone: {e}")
            return None

    def start(self) -> None:
        """Nothing to start: attached already (`open`), and the server is not ours."""

    def log(self, kind: str, message: str) -> None:
        self.watch.log(kind, message)

    def pids(self) -> list[int]:
        """Processes of ours: the load generator (bpftrace is the sampler's child)."""
        pid = self.runner.pid if self.runner is not None else None
        return [pid] if pid is not None else []

    def interrupt(self) -> None:
        """Nothing to signal ahead of `close`: the load generator is stopped there, in
        its own time (the server is not ours to tear down)."""

    def close(self) -> None:
        """Stop what serverscope started (the load, the sampler's children, the recorder);
        the server keeps running. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self.runner is not None:
                self.runner.stop()
        finally:
            self.watch.close()
