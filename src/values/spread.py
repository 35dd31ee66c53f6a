"""How connections reach a server's workers, as the snapshot carries it
(`ListenerSample.spread`, `.wake`, `.waiters`, read by readers.mechanism), and its
one-line label for panels and tables. Plain enums, no I/O: snapshot.py re-exports them."""

from __future__ import annotations

from enum import StrEnum


class Spread(StrEnum):
    """How new connections reach the workers, read from /proc (readers.mechanism)."""

    SHARED = "shared"  # the workers wait on one socket; the kernel picks one (see Wake)
    REUSEPORT = "reuseport"  # a socket per worker (SO_REUSEPORT): the kernel picks by hash
    MASTER = "master"  # a process accepts every connection and hands it to workers
    ACCEPTOR_THREAD = "acceptor_thread"  # a thread accepts and hands on to other threads
    # of its process (Apache worker/event's listener thread, goroutines' acceptor)


class Wake(StrEnum):
    """How the kernel gives a ready connection to those waiting on one socket."""

    EPOLL = "epoll"  # registered without EPOLLEXCLUSIVE: every waiter is woken, they race
    EXCLUSIVE = "exclusive"  # EPOLLEXCLUSIVE: one waiter, the most recent (LIFO)
    BLOCKING = "blocking"  # blocked in accept(): one waiter, the longest waiting (FIFO)
    SELECT = "select"  # select() on it (gunicorn's sync worker): every waiter woken, a race
    MIXED = "mixed"  # the waiters do not all wait the same way


WAKE_WORDS = {
    Wake.EPOLL: "epoll, all waiters woken",
    Wake.EXCLUSIVE: "EPOLLEXCLUSIVE (LIFO)",
    Wake.BLOCKING: "blocking accept (FIFO)",
    Wake.SELECT: "select, all waiters woken",
    Wake.MIXED: "mixed waits",
}


ONE_WORDS = {Wake.BLOCKING: "blocking accept", Wake.SELECT: "select"}


def mechanism_label(
    spread: Spread | None, wake: Wake | None, waiters: int | None, steer: str | None = None
) -> str:
    """One line for panels and tables: 'shared · epoll, all waiters woken', 'reuseport · by
    hash', 'master dispatch', 'unknown'."""
    if spread is None:
        return "unknown"
    how = WAKE_WORDS.get(wake, "wait unknown") if wake is not None else "wait unknown"
    if spread == Spread.REUSEPORT:
        if steer and steer != "hash":  # a program on the group, or SO_INCOMING_CPU
            return f"reuseport · by {steer.removeprefix('hash+')}"
        return "reuseport · by hash"
    if spread == Spread.MASTER:
        return "master dispatch · one process accepts, hands on"
    if spread == Spread.ACCEPTOR_THREAD:
        if waiters is not None and waiters > 1:
            return f"listener thread per process · {how}"
        return "acceptor thread hands on"
    if waiters == 1:  # no choice for the kernel to make
        return "one acceptor · " + ONE_WORDS.get(wake, "epoll") if wake else "one acceptor"
    return f"shared · {how}"
