"""What an attached worker is blocked in, read from outside: the system call of its main
thread (/proc/PID/task/PID/syscall, readers.syscalls). The stuck rule (judging.stuck) reads
it: a worker parked in an event loop's wait with an idle client waits for that client, it
is not stuck; one in a read of a client that sends nothing, on a lock, or running a
request is."""

from __future__ import annotations

from dataclasses import dataclass

RUNNING = "running"  # on a CPU when read: no system call to name
# the waits that watch many files at once: an event loop's (nginx, libuv, asyncio)
EPOLL_WAITS = frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2"})
POLLS = frozenset({"poll", "ppoll"})  # poll(fds, nfds, ...): nfds is its second argument
# another thread's waits that hold nothing up (a pool's idle threads: Node's, V8's); a
# sleeping thread may be a handler's sleep, so it counts as busy
IDLE_WAITS = EPOLL_WAITS | POLLS | {"futex"}


@dataclass(frozen=True, slots=True)
class Blocked:
    """A process worker's main thread, as /proc shows it when the sample was read."""

    call: str  # the system call's name ("epoll_wait", "poll", "recvfrom", "futex"...),
    # "running" (on a CPU), or "syscall N" (a number the reader does not name)
    fd: int | None = None  # its file argument: the fd read (read, recv*), the epoll fd
    socket: bool | None = None  # that fd is a socket; None: no fd, or not readable
    nfds: int | None = None  # poll/ppoll: how many fds it waits on
    others_busy: int = 0  # its other threads running or blocked outside IDLE_WAITS

    @property
    def multiplexes(self) -> bool:
        """Parked in a wait on many files (an event loop), every other thread idle: it
        serves whichever client speaks next. poll() on one fd is a wait for one client
        (Apache prefork's keep-alive read)."""
        if self.others_busy:
            return False
        return self.call in EPOLL_WAITS or (self.call in POLLS and (self.nfds or 0) > 1)

    def words(self) -> str:
        """`in epoll_wait`, `in recvfrom on socket fd 9`, `in poll on 1 fd`, `running`."""
        if self.call == RUNNING:
            return "running on a CPU"
        if self.call in POLLS and self.nfds is not None:
            text = f"in {self.call} on {self.nfds} fd{'s' * (self.nfds != 1)}"
        elif self.fd is not None and self.call not in EPOLL_WAITS | {"futex"}:
            text = f"in {self.call} on {'socket ' if self.socket else ''}fd {self.fd}"
        else:
            text = f"in {self.call}"
        if self.others_busy:
            text += f", {self.others_busy} other thread{'s' * (self.others_busy > 1)} busy"
        return text
