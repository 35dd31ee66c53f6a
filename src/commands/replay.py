"""`serverscope replay FILE`: a recording (`serverscope --record FILE`) in the TUI, with
pause and seek."""

from __future__ import annotations

import argparse
from typing import Any

from .common import fail


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "replay",
        help="replay a recording in the TUI",
        description="Open a recording (serverscope --record FILE) in the TUI, "
        "with pause (space) and seek ([ and ], comma and full stop).",
    )
    p.add_argument("file", help="a recording made with --record")
    return p


def run(a: argparse.Namespace) -> int:
    from values.codec import FormatError
    from values.recording import read_recording

    try:
        snaps = list(read_recording(a.file))
    except (OSError, FormatError) as e:
        why = str(e) if isinstance(e, FormatError) else f"{a.file}: {e.strerror or e}"
        return fail("serverscope", why)
    if not snaps:
        return fail("serverscope", f"{a.file}: the recording holds no snapshots")
    from tui.app import run_replay  # late: Textual loads only when a TUI opens

    return run_replay(snaps, a.file)
