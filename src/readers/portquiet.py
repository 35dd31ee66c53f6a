"""When the last dump of a server's connections still holds, told by eBPF: so a sample of
a quiet server needs no dump (the dump walks every socket of the host, TIME-WAIT
included: 7-12 ms at 50,000, the largest part of what an agent sampling at 1 Hz costs).

What the dump shows (the connections on the ports, their TCP state, queues and tcp_info,
the half-open ones) changes only through an event on one of the ports' sockets, and
readers.accepts_bpf counts them in the kernel (in the server's network namespace):
a state change (handshake completed, a FIN, a reset, close(), a timer's close:
sock:inet_sock_set_state), data in (sock:sk_data_ready), data read
(tcp:tcp_rcv_space_adjust), data sent (sock:sock_send_length), a half-open one's SYN-ACK
retransmitted (tcp:tcp_retransmit_synack), an accept by the server's tree (its accept
counts). An ACK has no tracepoint, so the gate holds only while the last dump saw no
unacknowledged data on the ports; a half-open connection made since the dump shows when
its handshake completes or, unanswered, when its SYN-ACK is first retransmitted (1 s).
Which process holds which connection is not the dump's: sockowners reads it every sample.

So the last dump stands while none of these moved, for at most CROSSCHECK_S; then a dump
is made anyway and compared with the one it replaced: a difference is a change the gate
did not see, counted and said (`note`), never dropped. Each sample asks bpftrace for its
counts before it decides (AcceptCounter.flush): a change shows at the next sample.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

CROSSCHECK_S = 30.0  # the dump is made at least this often, and compared


@dataclass(slots=True)
class QuietGate:
    """Call `may_skip` before each sample's dump decision, `dumped` after every dump."""

    crosscheck_s: float = CROSSCHECK_S
    skipped: int = 0  # dumps saved (bench, tests)
    checks: int = 0  # cross-check dumps made
    misses: int = 0  # cross-checks that found a change the gate had not seen
    note: str | None = None  # the last miss, in one line
    _at: float = -1e18  # when the last dump was made
    _mark: tuple[int, int] | None = None  # (flushes, changes) read before that dump
    _inflight: bool = True  # that dump saw unacknowledged data on the ports
    _check: bool = False  # this sample's dump is a cross-check
    _since: int = 0  # dumps skipped since the last dump

    def may_skip(self, now: float, changes: tuple[int, int] | None) -> bool:
        """True when the last dump still holds (see the module docstring); `changes`:
        AcceptCounter.changes() read now."""
        self._check = False
        mark = self._mark
        if changes is None or mark is None or self._inflight:
            return False
        # a flush asked for after the dump has been read, and no event since the dump
        if changes[0] <= mark[0] or changes[1] != mark[1]:
            return False
        if now - self._at >= self.crosscheck_s:
            self._check = self._since > 0
            return False
        self.skipped += 1
        self._since += 1
        return True

    def dumped(
        self,
        now: float,
        changes: tuple[int, int] | None,
        before: Collection[int],
        after: Collection[int],
        inflight: bool,
    ) -> None:
        """A dump was made at `now`; `changes` as read before it; `before`/`after` the
        connection inodes of the previous dump and this one; `inflight`: it saw data on
        the ports not yet acknowledged by the peer."""
        if self._check:
            self.checks += 1
            if set(before) != set(after):
                self.misses += 1
                gone, new = len(set(before) - set(after)), len(set(after) - set(before))
                self.note = (
                    f"the eBPF gate missed a change: a cross-check dump found {new} "
                    f"connection(s) new and {gone} gone ({self.misses} of {self.checks} "
                    "cross-checks)"
                )
        self._check = False
        self._at, self._mark, self._inflight, self._since = now, changes, inflight, 0
