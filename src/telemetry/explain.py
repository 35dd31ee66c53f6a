"""Why a diagnosed phenomenon happens and what fixes it, from the accept mechanism READ
(ListenerSample.spread/wake, telemetry.mechanism), never from a model's or server's name:
Node's cluster workers register their listener without EPOLLEXCLUSIVE, so "epoll wakes the
most recent waiter (LIFO)", said of it by name, was wrong. A recognised server
(ModelInfo.server) only words the advice in its own knobs ("`listen ... reuseport`").
Each function returns a suffix for a diagnosis line ("; why: fix"), "" when nothing was
read (no claim is better than a wrong one)."""

from __future__ import annotations

from collections import Counter

from .snapshot import ListenerSample, Snapshot, Spread, Wake

# what was read, and why the kernel's choice falls the way it does
_WHY = {
    Wake.EPOLL: (
        "one shared socket, epoll without EPOLLEXCLUSIVE: every waiter is woken and they "
        "race; the first to run takes what is ready"
    ),
    Wake.EXCLUSIVE: (
        "one shared socket, EPOLLEXCLUSIVE: one waiter is woken, LIFO: the most recent, "
        "usually the busiest"
    ),
    Wake.BLOCKING: (
        "one shared socket, workers blocked in accept(): the longest waiter is woken (FIFO), "
        "so the kernel spreads evenly; those that take fewer are busy longer between accepts"
    ),
    Wake.SELECT: (
        "one shared socket, select(): every waiter is woken and they race; the first to run "
        "takes what is ready"
    ),
    Wake.MIXED: "one shared socket, the workers waiting on it in different ways",
}
_FIX = {
    Wake.EPOLL: "fix: take one connection per wake-up, a socket per worker ({reuseport}) or {rr}",
    Wake.SELECT: "fix: a socket per worker ({reuseport}) or {rr}",
    Wake.EXCLUSIVE: (
        "fix: a socket per worker ({reuseport}) or rotate the waiters (nginx re-adds the "
        "listener every N accepts)"
    ),
}
# the advice in a recognised server's own words (ModelInfo.server's family)
_KNOBS = {
    "nginx": {"reuseport": "`listen ... reuseport`"},
    "node": {"rr": "cluster's round robin (SCHED_RR)", "shared": "cluster's SCHED_NONE"},
    "apache": {
        "keepalive": "shorten KeepAliveTimeout or use the event MPM",
        "reuseport": "ListenCoresBucketsRatio",
    },
    "gunicorn": {
        "keepalive": "use -k gthread (or an async worker) or a buffering proxy (nginx) in front"
    },
}
_GENERIC = {
    "reuseport": "reuseport",
    "rr": "a master's round robin",
    "shared": "a shared socket",
    "keepalive": (
        "shorten the keep-alive timeout or serve idle connections from an event loop "
        "(an event MPM, threads, async workers)"
    ),
}


def read(s: Snapshot) -> ListenerSample | None:
    """The listener whose mechanism stands for the server's: the most common one read
    (every listener of a server is usually waited on the same way); None if none read."""
    known = [ln for ln in s.listeners if ln.spread is not None]
    if not known:
        return None
    common = Counter((ln.spread, ln.wake) for ln in known).most_common(1)[0][0]
    return next(ln for ln in known if (ln.spread, ln.wake) == common)


def _knob(s: Snapshot, what: str) -> str:
    family = (s.model.server or "").split("-")[0] if s.model else ""
    return _KNOBS.get(family, {}).get(what, _GENERIC[what])


def dispatching(s: Snapshot) -> bool:
    """A master was read to accept every connection and hand it on."""
    ln = read(s)
    return ln is not None and ln.spread == Spread.MASTER


def skew(s: Snapshot) -> str:
    """Why a few workers take most connections, and the fix, from the mechanism read."""
    ln = read(s)
    if ln is None:
        return ""
    if ln.spread == Spread.REUSEPORT:
        return (
            "; a socket per worker (reuseport): the kernel hashes each connection's addresses "
            "to one, blind to load, and few clients hash unevenly (steer with "
            "SO_ATTACH_REUSEPORT_CBPF)"
        )
    if ln.spread == Spread.MASTER:
        return "; a master accepts and deals the connections: its policy chose, not the kernel"
    assert ln.wake is not None
    why = _WHY[ln.wake]
    if ln.spread == Spread.ACCEPTOR_THREAD:
        why = f"a listener thread per process accepts for its threads; {why}"
    fix = _FIX.get(ln.wake)
    if fix:
        why += "; " + fix.format(rr=_knob(s, "rr"), reuseport=_knob(s, "reuseport"))
    return f"; {why}"


def starvation(s: Snapshot) -> str:
    """Why every worker is pinned (each serves one connection to its end, keep-alive wait
    included: the rule's own evidence) and how the accept was read, and the fix."""
    ln = read(s)
    how = "blocks in accept() and " if ln is not None and ln.wake == Wake.BLOCKING else ""
    return (
        f"; each worker {how}serves one connection to its end, keep-alive wait included, "
        f"so idle clients pin them all; fix: {_knob(s, 'keepalive')}"
    )


def reuseport_backlog(s: Snapshot, owner: str) -> str:
    """Why one reuseport queue grows while the others idle."""
    ln = read(s)
    if ln is None or ln.spread != Spread.REUSEPORT:
        return ""
    return (
        f"; a socket per worker (reuseport): the kernel keeps hashing new connections to "
        f"{owner}'s socket whatever {owner} does (net.ipv4.tcp_migrate_req moves them when "
        "it closes; an SO_ATTACH_REUSEPORT_CBPF program can steer around it)"
    )


def master(s: Snapshot) -> str:
    """Why a dispatching master caps the server, and the fix."""
    ln = read(s)
    if ln is None or ln.spread not in (Spread.MASTER, Spread.ACCEPTOR_THREAD):
        return ""
    who = "one process" if ln.spread == Spread.MASTER else "one thread"
    return (
        f"; {who} accepts every connection and hands it on; fix: let the workers accept "
        f"themselves ({_knob(s, 'shared')} or reuseport)"
    )
