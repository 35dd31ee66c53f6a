"""Why a diagnosed phenomenon happens and what fixes it, from the accept mechanism READ
(ListenerSample.spread/wake, readers.mechanism), never from a model's or server's name:
Node's cluster workers register their listener without EPOLLEXCLUSIVE, so "epoll wakes the
most recent waiter (LIFO)", said of it by name, was wrong. A recognised server
(ModelInfo.server) only words the advice in its own knobs ("`listen ... reuseport`").
Each function returns a suffix for a diagnosis line ("; why: fix"), "" when nothing was
read (no claim is better than a wrong one)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from values.snapshot import Hold, ListenerSample, Snapshot
from values.spread import Spread, Wake

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
    Wake.EPOLL: (
        "fix: take one connection per wake-up, wait for a less busy worker (puma), a socket "
        "per worker ({reuseport}) or {rr}"
    ),
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
    "apache": {"reuseport": "ListenCoresBucketsRatio"},
}
_GENERIC = {
    "reuseport": "reuseport",
    "rr": "a master's round robin",
    "shared": "a shared socket",
}


def read(s: Snapshot) -> ListenerSample | None:
    """The listener whose mechanism stands for the server's: the most common one read
    (every listener of a server is usually waited on the same way); None if none read."""
    known = [ln for ln in s.listeners if ln.spread is not None]
    if not known:
        return None
    common = Counter((ln.spread, ln.wake) for ln in known).most_common(1)[0][0]
    return next(ln for ln in known if (ln.spread, ln.wake) == common)


# how a lab model's workers take from a shared socket (ModelInfo.policy, its config)
_TAKING = {
    "accept-policy all": "a woken worker takes every ready connection (accept-policy all)",
    "accept-policy one": "a woken worker takes one connection (accept-policy one)",
    "accept-policy less-busy": (
        "a serving worker waits 5 ms before it accepts (accept-policy less-busy)"
    ),
    "accept-policy rotate": (
        "a worker re-arms its EPOLLEXCLUSIVE wait every 16 accepts (accept-policy rotate)"
    ),
}


def _policy(s: Snapshot) -> str | None:
    return s.model.policy if s.model else None


def _knob(s: Snapshot, what: str) -> str:
    family = (s.model.server or "").split("-")[0] if s.model else ""
    return _KNOBS.get(family, {}).get(what, _GENERIC[what])


def dispatching(win: Sequence[Snapshot]) -> bool:
    """Is a master dealing the connections out (Node's cluster, the cluster model, the
    goroutines acceptor), so that the kernel does not choose a worker? Yes when it has
    dispatched, in the window or before it, or the mechanism read says so."""
    if any((s.model.dispatches or s.model.dispatches_delta or 0) > 0 for s in win if s.model):
        return True
    ln = read(win[-1]) if win else None
    return ln is not None and ln.spread == Spread.MASTER


def skew(s: Snapshot) -> str:
    """Why a few workers take most connections, and the fix, from the mechanism read."""
    ln = read(s)
    if ln is None:
        return ""
    if ln.spread == Spread.REUSEPORT:
        if ln.steer and not ln.steer.startswith("hash"):
            return (
                f"; a socket per worker (reuseport), steered by {ln.steer}: the program "
                "chooses, blind to load (a stalled worker keeps its share)"
            )
        return (
            "; a socket per worker (reuseport): the kernel hashes each connection's addresses "
            "to one, blind to load, and few clients hash unevenly (steer with "
            "SO_ATTACH_REUSEPORT_CBPF)"
        )
    if ln.spread == Spread.MASTER:
        policy = _policy(s)
        by = f" ({policy})" if policy else ""
        return f"; a master accepts and deals the connections: its policy{by} chose, not the kernel"
    assert ln.wake is not None
    why = _WHY[ln.wake]
    if ln.spread == Spread.ACCEPTOR_THREAD:
        why = f"a listener thread per process accepts for its threads; {why}"
    taking = _TAKING.get(_policy(s) or "")
    if taking:
        why += f"; {taking}"
    fix = _FIX.get(ln.wake)
    if fix:
        why += "; " + fix.format(rr=_knob(s, "rr"), reuseport=_knob(s, "reuseport"))
    return f"; {why}"


def starvation(s: Snapshot, hold: Hold | None = None) -> str:
    """Why every worker is pinned (each serves one connection to its end: the rule's own
    evidence), by what holds them (`hold`, read from their sockets; None: not read, taken
    as the keep-alive wait), how the accept was read, and the fix that follows."""
    ln = read(s)
    how = "blocks in accept() and " if ln is not None and ln.wake == Wake.BLOCKING else ""
    family = (s.model.server or "").split("-")[0] if s.model else ""
    fixes = _HOLD_FIXES.get(family, _HOLD_FIXES[""])
    fix = fixes.get(hold, fixes[None])
    return f"; each worker {how}serves one connection to its end{_PINNED[hold]}; fix: {fix}"


# what pins the workers (snapshot.Hold, read from each connection's tcp_info; None: not
# read) -> why they stay pinned
_PINNED: dict[Hold | None, str] = {
    Hold.KEEPALIVE: ", keep-alive wait included, so idle clients pin them all",
    None: ", keep-alive wait included, so idle clients pin them all",
    Hold.PARTIAL: ", so clients that stop half-way through a request pin them all",
    Hold.SILENT: ", so clients that connect and send nothing pin them all",
}
_BUFFER = "a proxy that buffers whole requests (nginx) in front"
_READ_TIMEOUT = f"a request (header) read timeout, or {_BUFFER}"
_KEEPALIVE = (
    "shorten the keep-alive timeout or serve idle connections from an event loop "
    "(an event MPM, threads, async workers)"
)
# the fix by server family (ModelInfo.server's first word; "" any other) and what pins
# the workers; a family's None entry stands for the holds it does not name
_HOLD_FIXES: dict[str, dict[Hold | None, str]] = {
    "": {
        Hold.KEEPALIVE: _KEEPALIVE,
        None: _KEEPALIVE,
        Hold.PARTIAL: _READ_TIMEOUT,
        Hold.SILENT: _READ_TIMEOUT,
    },
    "apache": {
        None: "shorten KeepAliveTimeout or use the event MPM",
        Hold.PARTIAL: f"shorten RequestReadTimeout (mod_reqtimeout) or put {_BUFFER}",
        Hold.SILENT: f"shorten RequestReadTimeout (mod_reqtimeout) or put {_BUFFER}",
    },
    "gunicorn": {
        None: "use -k gthread (or an async worker) or a buffering proxy (nginx) in front",
        Hold.PARTIAL: f"put {_BUFFER}, or use -k gthread (or an async worker); --timeout "
        "bounds each",
        Hold.SILENT: f"put {_BUFFER}, or use -k gthread (or an async worker); --timeout "
        "bounds each",
    },
    "python": {  # http.server
        None: "set the handler's `timeout` or serve with ThreadingHTTPServer",
        Hold.PARTIAL: f"set the handler's `timeout`, serve with ThreadingHTTPServer, or put "
        f"{_BUFFER}",
        Hold.SILENT: f"set the handler's `timeout`, serve with ThreadingHTTPServer, or put "
        f"{_BUFFER}",
    },
}


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


def stalled_remedy(s: Snapshot, n: int) -> str:
    """What restarting a stalled reuseport worker does to the `n` connections in its queue:
    the kernel moves them to the group's other sockets only when the socket closes with
    net.ipv4.tcp_migrate_req = 1, and a socket closes only when no process holds it."""
    policy = s.model.policy if s.model is not None else None
    if policy is not None and "migrate" in policy:  # the lab's reuseport --migrate
        return (
            f"; restart it: it alone holds its socket, so the kernel hands its {n} connections "
            "to the other workers as it exits (--migrate, net.ipv4.tcp_migrate_req = 1)"
        )
    if policy is not None:  # the lab's reuseport, its master holding every socket
        return (
            "; restarting it does not move them: the master keeps its socket, so they wait "
            "for the new worker (with --migrate each worker alone holds its socket and the "
            "kernel hands its queue to the others as it exits)"
        )
    return (
        "; they move to the other sockets only if its socket closes with "
        "net.ipv4.tcp_migrate_req = 1 (Linux 5.14+), which needs no other process (a master) "
        "to hold it; else a restart leaves them to the next taker, or resets them with it"
    )
