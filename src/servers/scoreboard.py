"""A scoreboard in shared memory, modelled on Apache's: one slot per worker.

The memory is an anonymous memfd that the supervisor creates and hands to the model's
root process, which maps it before forking; so every worker writes its own slot in place
(no lock: one writer per slot, aligned 64-bit stores) and the supervisor reads all of them
without any IPC. The model area holds what only the master writes (spawns, deaths,
dispatches). Readers get plain frozen dataclasses.

Request phases: after the slots, each slot owns a phase area of three
histograms (queue wait, in-server wait, service; see values.snapshot.Phases), each
count, sum_us, max_us and plumbing.loghist's NBUCKETS bucket counts as uint64: 4,872
bytes a slot, 5 MB for 1,024 slots (memfd pages are only backed once written). The
worker writes them through a memoryview cast over the mmap (servers.slotwriter: an
index, four integer stores, no allocation); the reader reads the three counts of a slot
(`phase_counts`) and its histograms (`phases`) only when a count moved.

After the phase area, each slot's current request and client (servers.inflight: 144
bytes a slot), written through `SlotWriter.req`, read by `request_seqs` and `request`.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import threading
import time

from plumbing.loghist import LogHist

from . import inflight
from .slots import (
    _KINDS,
    _ROLES,
    _STATES,
    Kind,
    ModelArea,
    Role,
    ScoreboardSnapshot,
    SlotInfo,
    State,
)
from .slotwriter import HIST_WORDS, PHASES, QUEUE, SERVER, SERVICE, SlotWriter

MAGIC = 0x53435350  # "SCSP"
VERSION = 4  # 2: slots carry a role; 3: and a phase area; 4: and a request area
DEFAULT_SLOTS = 1024


class _Slot(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_int32),
        ("tid", ctypes.c_int32),
        ("state", ctypes.c_uint8),
        ("kind", ctypes.c_uint8),  # a Kind
        ("listener", ctypes.c_int16),  # index of the listening socket it accepts on, -1 none
        ("generation", ctypes.c_uint32),  # incremented each time a new worker takes the slot
        ("accepted", ctypes.c_uint64),
        ("open", ctypes.c_int64),
        ("requests", ctypes.c_uint64),
        ("bytes_sent", ctypes.c_uint64),
        ("last_change", ctypes.c_double),  # time.monotonic() (CLOCK_MONOTONIC, system-wide)
        ("started", ctypes.c_double),
        ("deaths", ctypes.c_uint32),
        ("group", ctypes.c_int32),  # child process index for thread workers
        ("role", ctypes.c_uint8),  # a Role
        ("_pad", ctypes.c_uint8 * 7),
    ]


_SLOT_FMT = "=iiBBhIQqQQddIiB7x"
assert struct.calcsize(_SLOT_FMT) == ctypes.sizeof(_Slot), "slot layout mismatch"


class _Header(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_uint32),
        ("version", ctypes.c_uint32),
        ("nslots", ctypes.c_uint32),
        ("high_water", ctypes.c_uint32),  # slots ever used: readers look at [0, high_water)
        ("root_pid", ctypes.c_int32),
        ("ready", ctypes.c_int32),  # 1 once the initial workers are started
        ("expected", ctypes.c_int32),  # initial worker slots the root is starting
        ("gil", ctypes.c_int32),  # 1 GIL enabled, 0 free-threaded
        ("dispatches", ctypes.c_uint64),  # connections handed out by a master (cluster, goroutines)
        ("spawns", ctypes.c_uint64),
        ("deaths", ctypes.c_uint64),
        ("last_death_pid", ctypes.c_int32),
        ("last_death_status", ctypes.c_int32),  # waitpid status (signal number if killed)
        ("last_death_time", ctypes.c_double),
        ("model", ctypes.c_char * 32),
        ("error", ctypes.c_char * 256),  # a start-up failure the root wants the supervisor to show
        # connections a master accepted but could not hand to a worker (cluster: every worker
        # stalled, or the worker had no free fd and the kernel dropped it); written by the
        # master and by cluster workers (so a concurrent increment may be lost: a floor)
        ("handoff_failures", ctypes.c_uint64),
        ("phases", ctypes.c_int32),  # 1: workers record request phases (ServerConfig.phases)
    ]


_HEADER_SIZE = (ctypes.sizeof(_Header) + 63) // 64 * 64

# the phase area: per slot, PHASES histograms of HIST_WORDS uint64 each (servers.slotwriter)
SLOT_PHASE_WORDS = PHASES * HIST_WORDS
_SLOT_PHASE_BYTES = SLOT_PHASE_WORDS * 8
_SLOT_BYTES = ctypes.sizeof(_Slot) + _SLOT_PHASE_BYTES + inflight.RECORD_BYTES


class Scoreboard:
    """Owner-side and worker-side handle on one scoreboard."""

    def __init__(self, fd: int, *, create: bool = False, nslots: int = DEFAULT_SLOTS) -> None:
        self.fd = fd
        if create:
            size = _HEADER_SIZE + nslots * _SLOT_BYTES
            os.ftruncate(fd, size)
        else:
            size = os.fstat(fd).st_size
        self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.header = _Header.from_buffer(self._mm, 0)
        if create:
            self.header.magic = MAGIC
            self.header.version = VERSION
            self.header.nslots = nslots
        elif self.header.magic != MAGIC or self.header.version != VERSION:
            raise ValueError("not a serverscope scoreboard (or another version)")
        self.nslots = self.header.nslots
        self._slots = (_Slot * self.nslots).from_buffer(self._mm, _HEADER_SIZE)
        self._phase_at = _HEADER_SIZE + self.nslots * ctypes.sizeof(_Slot)  # 8-aligned
        self._request_at = self._phase_at + self.nslots * _SLOT_PHASE_BYTES
        self._words = memoryview(self._mm)[self._phase_at : self._request_at].cast("Q")
        self._seqs = memoryview(self._mm)[self._request_at :].cast("I")[:: inflight.WORDS]

    @classmethod
    def create(cls, nslots: int = DEFAULT_SLOTS) -> Scoreboard:
        fd = os.memfd_create("serverscope-scoreboard", os.MFD_CLOEXEC)
        return cls(fd, create=True, nslots=nslots)

    # -- writer side -------------------------------------------------------------------
    def slot(self, index: int) -> _Slot:
        if not 0 <= index < self.nslots:
            raise IndexError(f"scoreboard has {self.nslots} slots, not {index + 1}")
        return self._slots[index]

    def claim(
        self,
        index: int,
        *,
        kind: Kind = Kind.PROCESS,
        group: int = -1,
        listener: int = -1,
        role: Role = Role.WORKER,
    ) -> SlotWriter:
        """Called by a worker (in its own process/thread) to take slot `index`."""
        s = self.slot(index)
        now = time.monotonic()
        s.pid = os.getpid()
        s.tid = threading.get_native_id()
        s.kind = kind
        s.group = group
        s.listener = listener
        s.role = role
        base = index * SLOT_PHASE_WORDS  # cumulative since this worker started
        self._words[base : base + SLOT_PHASE_WORDS] = _ZERO_PHASES
        s.generation += 1
        s.accepted = 0
        s.open = 0
        s.requests = 0
        s.bytes_sent = 0
        s.started = now
        s.last_change = now
        s.state = State.STARTING
        if index + 1 > self.header.high_water:
            self.header.high_water = index + 1
        words = self._words[base : base + SLOT_PHASE_WORDS] if self.header.phases else None
        req = inflight.RequestRecord(self._mm, self._request_at + index * inflight.RECORD_BYTES)
        req.clear()
        return SlotWriter(s, words, req)

    def reserve(self, index: int) -> None:
        """Mark a slot as starting before its worker runs (so readers see it at once)."""
        s = self.slot(index)
        s.state = State.STARTING
        s.last_change = time.monotonic()
        if index + 1 > self.header.high_water:
            self.header.high_water = index + 1

    def mark_dead(self, index: int, status: int, *, record: bool = True) -> None:
        """The master records a worker's death in its slot and (unless `record` is False:
        another slot of the same process already counted it) in the model area."""
        s = self.slot(index)
        now = time.monotonic()
        s.state = State.DEAD
        s.open = 0
        s.deaths += 1
        s.last_change = now
        if not record:
            return
        h = self.header
        h.deaths += 1
        h.last_death_pid = s.pid
        h.last_death_status = status
        h.last_death_time = now

    def mark_empty(self, index: int) -> None:
        """A worker that the master stopped on purpose (pool shrinking): the slot is free."""
        s = self.slot(index)
        s.state = State.EMPTY
        s.open = 0
        s.last_change = time.monotonic()

    def set_model(self, name: str, root_pid: int) -> None:
        self.header.model = name.encode()[:31]
        self.header.root_pid = root_pid

    def set_error(self, message: str) -> None:
        self.header.error = message.encode()[:255]

    # -- reader side -------------------------------------------------------------------
    def read_model(self) -> ModelArea:
        h = self.header
        return ModelArea(
            model=h.model.decode(errors="replace"),
            root_pid=h.root_pid,
            ready=bool(h.ready),
            expected=h.expected,
            gil=bool(h.gil),
            dispatches=h.dispatches,
            spawns=h.spawns,
            deaths=h.deaths,
            last_death_pid=h.last_death_pid,
            last_death_status=h.last_death_status,
            last_death_time=h.last_death_time,
            high_water=h.high_water,
            error=h.error.decode(errors="replace"),
            handoff_failures=h.handoff_failures,
        )

    def read(self) -> ScoreboardSnapshot:
        n = min(self.header.high_water, self.nslots)
        size = ctypes.sizeof(_Slot)
        raw = self._mm[_HEADER_SIZE : _HEADER_SIZE + n * size]
        states, kinds, roles = _STATES, _KINDS, _ROLES
        slots = tuple(
            SlotInfo(i, f[0], f[1], states[f[2]], kinds[f[3]], *f[4:14], roles[f[14]])  # type: ignore[call-arg]
            for i, f in enumerate(struct.iter_unpack(_SLOT_FMT, raw))
        )
        return ScoreboardSnapshot(time.monotonic(), self.read_model(), slots)

    @property
    def phases_on(self) -> bool:
        return bool(self.header.phases)

    def phase_counts(self, index: int) -> tuple[int, int, int]:
        """How many values slot `index` recorded per phase (queue, server, service)."""
        w, base = self._words, index * SLOT_PHASE_WORDS
        return (w[base], w[base + HIST_WORDS], w[base + 2 * HIST_WORDS])

    def phase(self, index: int, phase: int) -> LogHist:
        """Slot `index`'s histogram of `phase` (QUEUE, SERVER, SERVICE), cumulative. A worker
        may be writing meanwhile: the count comes from the buckets, so it is consistent
        with them; sum and max may be one value ahead or behind. ~10 us (C-speed compress
        over the 200 buckets, in LogHist.from_counts)."""
        return hist_of(self.phase_words(index, phase))

    def phase_words(self, index: int, phase: int) -> list[int]:
        """The raw words of one histogram: count, sum_us, max_us, then NBUCKETS counts."""
        base = index * SLOT_PHASE_WORDS + phase * HIST_WORDS
        return self._words[base : base + HIST_WORDS].tolist()

    def phases(self, index: int) -> tuple[LogHist, LogHist, LogHist]:
        """Slot `index`'s three histograms (queue, server, service)."""
        return self.phase(index, QUEUE), self.phase(index, SERVER), self.phase(index, SERVICE)

    def request_seqs(self) -> list[int]:
        """Every slot's request-record sequence number (changes with each write)."""
        return self._seqs.tolist()

    def request(self, index: int, seq: int) -> inflight.Reading | None:
        """Slot `index`'s current request and client if its record is still at `seq`
        (from `request_seqs`); None while its worker writes it."""
        return inflight.read(self._mm, self._request_at + index * inflight.RECORD_BYTES, seq)

    def raw_slots(self) -> list[tuple[int | float, ...]]:
        """The slots ever used as plain tuples, in SlotInfo's field order after `index`
        (state, kind and role as ints): the sampler's hot loop, which reads every slot
        four times a second, pays 0.3 us a slot here against 3 us for `read()`'s SlotInfo
        (bench/bench_sampler.py)."""
        n = min(self.header.high_water, self.nslots)
        size = ctypes.sizeof(_Slot)
        return list(struct.iter_unpack(_SLOT_FMT, self._mm[_HEADER_SIZE : _HEADER_SIZE + n * size]))

    def close(self) -> None:
        self._seqs.release()
        try:
            self._words.release()
        except BufferError:
            pass  # a SlotWriter still holds its slice: the mmap goes with the process
        del self._slots
        del self.header
        try:
            self._mm.close()
        except BufferError:
            pass
        os.close(self.fd)


def hist_of(words: list[int]) -> LogHist:
    """A LogHist from a histogram's raw words (`Scoreboard.phase_words`)."""
    return LogHist.from_counts(words[3:], words[1], words[2])


_ZERO_PHASES = memoryview(bytes(_SLOT_PHASE_BYTES)).cast("Q")
