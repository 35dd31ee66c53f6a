"""What a decoded snapshot's values may be beyond their types: the ranges that matter to
its readers, checked when a recording (or any JSON) is read back (values.codec; the
table is snapshot.py's). Each check gives what is out of range, or None.

- A sample's interval is what a replay waits between frames: over an hour (1e308 s) it
  would never show the next.
- A histogram's buckets are indexes into the fixed bucket table (a crafted index of 10**15
  made `bucket_bounds` shift by ~10**14 bits), ascending (its quantiles bisect their
  running sums) and non-empty (a zero or negative count left `quantile_ms` past its end).
- A stuck worker's stack (values.stuck) holds at most MAX_THREADS threads of MAX_FRAMES
  frames, its texts short like the rest.
- A worker's current request and its connections (values.current) are counts of at
  least 0 and short texts (a request line is 64 bytes in the scoreboard, at most 4 times
  that escaped by mod_status): a detail pane draws them whole.
"""

from __future__ import annotations

from typing import Any

from plumbing.loghist import NBUCKETS, LogHist

MAX_INTERVAL_S = 3600.0  # between two samples, and the analysis window; the period is 0.25-2 s
MAX_TEXT = 512  # characters of a request line, a client, a TCP state
MAX_PEERS = 256  # connections listed per worker (8 are)


def loghist(h: LogHist) -> str | None:
    if min(h.count, h.sum_us, h.max_us) < 0:
        return "a histogram's count, sum_us and max_us are at least 0"
    last = -1
    for i, c in h.buckets:
        if not last < i < NBUCKETS:
            return f"bucket index {i}: buckets ascend, each in 0..{NBUCKETS - 1}"
        if c <= 0:
            return f"bucket {i} holds {c}: a listed bucket holds at least 1"
        last = i
    return None


def snapshot(s: Any) -> str | None:
    if s.interval_s is not None and not 0 < s.interval_s <= MAX_INTERVAL_S:
        return f"interval_s {s.interval_s}: a sample's interval is in (0, {MAX_INTERVAL_S:g}] s"
    if not 0 < s.window_s <= MAX_INTERVAL_S:
        return f"window_s {s.window_s}: the window is in (0, {MAX_INTERVAL_S:g}] s"
    return None


def _long(**texts: str | None) -> str | None:
    for name, text in texts.items():
        if text is not None and len(text) > MAX_TEXT:
            return f"{name} of {len(text)} characters: at most {MAX_TEXT}"
    return None


def current(c: Any) -> str | None:
    if c.requests is not None and c.requests < 0:
        return f"requests {c.requests}: at least 0"
    return _long(request=c.request, client=c.client)


def peer(p: Any) -> str | None:
    for name in ("recv_q", "send_q", "bytes_received", "bytes_sent"):
        v = getattr(p, name)
        if v is not None and v < 0:
            return f"{name} {v}: at least 0"
    return _long(client=p.client, tcp_state=p.tcp_state)


def peers(p: Any) -> str | None:
    if len(p.listed) > MAX_PEERS:
        return f"{len(p.listed)} connections listed: at most {MAX_PEERS}"
    if p.total < len(p.listed):
        return f"total {p.total}: at least the {len(p.listed)} listed"
    return None


MAX_THREADS = 4096  # threads (or goroutines) in one stack capture
MAX_FRAMES = 512  # frames in one thread's stack


def stack(c: Any) -> str | None:
    if len(c.threads) > MAX_THREADS:
        return f"{len(c.threads)} threads in a stack: at most {MAX_THREADS}"
    for t in c.threads:
        if len(t.frames) > MAX_FRAMES:
            return f"{len(t.frames)} frames in a thread's stack: at most {MAX_FRAMES}"
        for f in t.frames:
            if (why := _long(function=f.function, file=f.file, module=f.module)) is not None:
                return why
        if (why := _long(name=t.name, state=t.state, origin=t.origin)) is not None:
            return why
    return _long(error=c.error, kind=c.kind, evidence=c.evidence, method=c.method)


def episode(e: Any) -> str | None:
    return _long(worker=e.worker, what=e.what, state=e.state, request=e.request, client=e.client)
