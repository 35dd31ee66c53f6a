"""Recordings: snapshots as JSON Lines, and a reader that yields them back equal.

Line 1 is a header `{"format": "serverscope-telemetry", "version": 1, ...}`; every
following line is one `Snapshot.to_dict()` (which carries "version" too). Hand-written:
JSON Lines is one `json.dumps` per line; the standard library's json is all it takes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .snapshot import FORMAT_VERSION, FormatError, Snapshot

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


def _check_header(line: str, path: str | Path) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a serverscope recording (no header line)")
    if header.get("version") != FORMAT_VERSION:
        raise FormatError(
            f"{path}: recording format version {header.get('version')!r}; "
            f"this serverscope reads {FORMAT_VERSION}"
        )
    return header


def read_recording(path: str | Path) -> Iterator[Snapshot]:
    """Yield the snapshots of a recording in order (a truncated last line is skipped)."""
    with open(path, encoding="utf-8") as f:
        _check_header(f.readline(), path)
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                if not line.endswith("\n"):
                    return  # the writer was killed mid-line
                raise FormatError(f"{path}:{n}: not JSON") from None
            yield Snapshot.from_dict(data)
