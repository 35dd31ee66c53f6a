"""Recordings: snapshots as JSON Lines, and a reader that yields them back equal.

Line 1 is a header `{"format": "serverscope-telemetry", "version": 1, ...}`; every
following line is one `Snapshot.to_dict()` (which carries "version" too). Hand-written:
JSON Lines is one `json.dumps` per line; the standard library's json is all it takes.

A recording is input like any other: the reader takes a regular file only, reads no line
past MAX_LINE, and checks every value's type and range before a snapshot is made
(values.codec); whatever is wrong is one FormatError naming the line.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .codec import FormatError
from .snapshot import FORMAT_VERSION, Snapshot

FORMAT_NAME = "serverscope-telemetry"


class RecordingWriter:
    """`with RecordingWriter(path) as rec: rec.write(snap)`; each line is flushed at once."""

    def __init__(self, path: str | Path, *, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._f: IO[str] = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": time.time(),
            "meta": meta or {},
        }
        self._f.write(json.dumps(header) + "\n")
        self._f.flush()
        self.count = 0

    def write(self, snap: Snapshot) -> None:
        self._f.write(json.dumps(snap.to_dict(), separators=(",", ":")) + "\n")
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# A line longer than this is refused before it is parsed, and no more of it is read. The
# largest snapshot line we write, 1,024 workers each with six histograms of all 200
# buckets, is 16.6 MiB (~6 MiB with 80 buckets, a wide latency spread).
MAX_LINE = 32 * 1024 * 1024
# Nor is a line of more values than this parsed (commas, and lists and objects): a short
# value costs 30-70 bytes once parsed for its 2-4 characters, and 32 MiB lines of "ab" or of
# [] took 540 and 685 MiB; that largest line holds 2.5 million commas, 1.25 million lists.
MAX_VALUES = 3_000_000
MAX_CONTAINERS = 2_500_000
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
}


def open_recording(path: str | Path) -> IO[bytes]:
    """The recording at `path` opened for reading: a regular file, else FormatError (a FIFO
    would block the reader forever, /dev/zero feed it without end). OSError as open gives
    it (no such file, no permission)."""
    # O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise FormatError(f"{path}: {kind}, not a recording (a file made with --record)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _lines(f: IO[bytes], path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of at most MAX_LINE bytes each; FormatError at a longer one."""
    n = 0
    while line := f.readline(MAX_LINE + 1):
        n += 1
        if len(line) > MAX_LINE:
            raise FormatError(f"{path}:{n}: a line longer than {MAX_LINE >> 20} MiB")
        yield n, line


def _parse(line: bytes) -> Any:
    """A line's JSON (strict: no NaN or Infinity); ValueError saying why not."""
    if line.count(b",") > MAX_VALUES:
        raise ValueError(f"more than {MAX_VALUES:,} values in a line")
    if line.count(b"[") + line.count(b"{") > MAX_CONTAINERS:
        raise ValueError(f"more than {MAX_CONTAINERS:,} lists and objects in a line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (byte {e.start + 1})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise ValueError("not JSON a recording holds (nested too deep)") from None
    except ValueError as e:  # an integer of over 4,300 digits, NaN
        raise ValueError(f"not JSON a recording holds ({str(e)[:80]})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _check_header(line: bytes, path: str | Path) -> dict[str, Any]:
    try:
        header = _parse(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a serverscope recording (no header line)")
    if header.get("version") != FORMAT_VERSION:
        raise FormatError(
            f"{path}: recording format version {str(header.get('version'))[:20]!r}; "
            f"this serverscope reads {FORMAT_VERSION}"
        )
    return header


def read_recording(path: str | Path) -> Iterator[Snapshot]:
    """Yield the snapshots of a recording in order (a last line cut short by a kill is
    skipped). Anything else wrong is a FormatError of one line, `PATH:LINE: what`."""
    with open_recording(path) as f:
        lines = _lines(f, path)
        first = next(lines, None)
        _check_header(first[1] if first else b"", path)
        for n, line in lines:
            if not line.strip():
                continue
            try:
                data = _parse(line)
            except ValueError as e:
                if not line.endswith(b"\n"):
                    return  # the writer was killed mid-line
                raise FormatError(f"{path}:{n}: {e}") from None
            try:
                yield Snapshot.from_dict(data)
            except FormatError as e:
                raise FormatError(f"{path}:{n}: {e}") from None
