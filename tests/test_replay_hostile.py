"""`serverscope replay` and the recording reader on hostile files: one line naming the line,
never a traceback, a hang or a flood.

Before: of the crafted recordings in tests/hostile_recordings.py, 11 gave a Python traceback
(a list, string or number where a snapshot belongs, a string where a number belongs, a
status code that is not a number, an integer literal of 5,000 digits, deep nesting, bytes
that are not UTF-8); 9 more read as valid (true as a seq, a list as accepts, a bucket index
of 10**15, NaN, Infinity, 1e999, an integer past int64...) and NaN crashed the TUI; a FIFO
hung (still waiting after 15 s), /dev/zero grew to 1.5 GB in 15 s, a 1 GB line took 2.0 GB
before its error.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import os
import random
import subprocess
import sys
import threading
import types
import typing
from pathlib import Path
from typing import Any

import pytest

import hostile_recordings as H
from commands.main import main
from values.codec import INT64, FormatError
from values.recording import MAX_CONTAINERS, MAX_LINE, MAX_VALUES, open_recording, read_recording
from values.snapshot import Snapshot

# what the one line must say, beyond the file's name (line 1 is the header, 2 the first
# snapshot; the crafted field is in the second snapshot, line 3)
SAYS = {
    "empty file": "no header line",
    "no header": "no header line",
    "header a string": "no header line",
    "header only": "holds no snapshots",
    "header a list": "no header line",
    "header version a string": "format version '1'",
    "snapshot a list": ":2: a snapshot is a JSON object, not a list",
    "snapshot a string": ":2: a snapshot is a JSON object, not a string",
    "snapshot a number": ":2: a snapshot is a JSON object, not an integer",
    "workers an object": ":3: workers: expected a list, got an object",
    "a worker a list": ":3: workers[0]: expected an object, got a list",
    "seq a string": ":3: seq: expected an integer, got 'abc'",
    "time a string": ":3: time: expected a number, got 'now'",
    "seq true": ":3: seq: expected an integer, got True",
    "accepts a list": ":3: workers[0].accepts: expected an integer, got a list",
    "cpu_percent a dict": ":3: workers[1].cpu_percent: expected a number, got an object",
    "state unknown": ":3: workers[0].state: WorkerState: unknown value 'boss'",
    "model name a number": ":3: model.name: expected a string, got 7",
    "status code not a number": ":3: client.status.abc: expected an integer key",
    "a bucket index past the end": ":3: phases.service: bucket index 1000000000000000",
    "a bucket a triple": ":3: phases.service.buckets[0]: expected a list of 2",
    "a huge integer literal": ":3: not JSON a recording holds",
    "an integer past int64": ":3: workers[0].accepts_total: integer 9999",
    "NaN": ":3: not JSON a recording holds (NaN is not a number)",
    "Infinity": ":3: not JSON a recording holds (Infinity is not a number)",
    "1e999": ":3: wall_time: expected a finite number, got inf",
    "deep nesting": ":3: not JSON a recording holds (nested too deep)",
    "not UTF-8": ":3: not UTF-8",
    "not JSON mid-file": ":2: not JSON",
}


def _one_line(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    code = main(["replay", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(path) in err
    return err


@pytest.mark.parametrize("name", list(H.CRAFTED))
def test_a_crafted_recording_is_one_line_naming_what_and_where(tmp_path, capsys, name):
    path = tmp_path / "crafted.jsonl"
    path.write_bytes(H.CRAFTED[name]())
    if name != "header only":  # that one reads (no snapshots): refused by replay itself
        with pytest.raises(FormatError):  # read_recording refuses it: replay opens no TUI
            list(read_recording(path))
    assert SAYS[name] in _one_line(capsys, path)


def _within(seconds: float, fn: Any) -> Any:
    """fn() in a thread, failing (not hanging) when it takes longer than `seconds`."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(_result(fn)), daemon=True)
    t.start()
    t.join(seconds)
    assert out, f"still reading after {seconds} s"
    return out[0]


def _result(fn: Any) -> Any:
    try:
        return fn()
    except Exception as e:
        return e


@pytest.mark.parametrize("kind", ["FIFO", "character device", "directory"])
def test_a_fifo_a_device_or_a_directory_is_one_line_at_once(tmp_path, capsys, kind):
    path = {"FIFO": tmp_path / "fifo", "character device": Path("/dev/zero")}.get(kind, tmp_path)
    if kind == "FIFO":
        os.mkfifo(path)
    err = _within(10, lambda: list(read_recording(path)))
    assert isinstance(err, FormatError) and f"a {kind}, not a recording" in str(err)
    assert "not a recording" in _within(10, lambda: _one_line(capsys, path))


# `serverscope replay PATH` in a process of its own, which then prints its peak RSS (VmHWM:
# this process's own, where wait4's ru_maxrss also counts the forking parent's pages)
REPLAY_THEN_PEAK = """
import sys
from commands.main import main
code = main(["replay", sys.argv[1]])
print(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1])
sys.exit(code)
"""


def _replay_peak(path: Path) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in bytes) of `serverscope replay PATH`."""
    done = subprocess.run(
        [sys.executable, "-c", REPLAY_THEN_PEAK, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr, int(done.stdout.split()[-1]) * 1024


def test_a_line_past_the_cap_is_refused_before_it_is_read_whole(tmp_path):
    path = tmp_path / "long.jsonl"
    with open(path, "wb") as f:  # a header, then 1 GiB with no newline (sparse: no disk)
        f.write(H.lines(H.HEADER))
        f.truncate(f.tell() + (1 << 30))
    code, err, peak = _replay_peak(path)
    assert code == 2, err
    assert f"{path}:2: a line longer than {MAX_LINE >> 20} MiB" in err and err.count("\n") == 1
    assert peak < MAX_LINE + 100 * 2**20, f"{peak >> 20} MiB"  # the old reader: 2.0 GB


def test_a_line_of_millions_of_small_values_is_refused_before_it_is_parsed(tmp_path):
    """32 MiB of `[]` or `"ab"` took 685 and 540 MiB to parse: past MAX_CONTAINERS lists and
    objects or MAX_VALUES commas, a line is refused unparsed (at the limits, 3 million short
    strings parse in 264 MiB)."""
    path = tmp_path / "many.jsonl"
    for item, n, says in (
        (b"[]", MAX_CONTAINERS + 1, "lists and objects"),
        (b'"ab"', MAX_VALUES + 2, "values"),
    ):
        path.write_bytes(H.lines(H.HEADER) + b"[" + b",".join([item] * n) + b"]\n")
        code, err, peak = _replay_peak(path)
        assert code == 2 and f"{path}:2: more than" in err and says in err, err
        assert peak < MAX_LINE + 100 * 2**20, f"{item!r}: {peak >> 20} MiB"


def test_the_reader_opens_only_a_regular_file_and_keeps_no_fd(tmp_path):
    path = tmp_path / "rec.jsonl"
    path.write_bytes(H.valid())
    before = len(os.listdir("/proc/self/fd"))
    with open_recording(path) as f:
        assert f.readline().startswith(b'{"format"')
    assert len(list(read_recording(path))) == 4
    with pytest.raises(FormatError):
        list(read_recording("/dev/null"))
    assert len(os.listdir("/proc/self/fd")) == before


# -- the fuzz test -------------------------------------------------------------------------
@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    return typing.get_type_hints(tp)


def conforms(value: Any, tp: Any, where: str = "") -> None:
    """Assert `value` is of type `tp` all through (the oracle: plain isinstance, written
    apart from values.codec)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        if value is None:
            return
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        assert type(value) is tp, where
        hints = _hints(tp)
        for f in dataclasses.fields(tp):
            conforms(getattr(value, f.name), hints[f.name], f"{where}.{f.name}")
    elif origin is tuple:
        args = typing.get_args(tp)
        assert type(value) is tuple, where
        if args[-1] is not Ellipsis:
            assert len(value) == len(args), where
        for i, x in enumerate(value):
            conforms(x, args[0] if args[-1] is Ellipsis else args[i], f"{where}[{i}]")
    elif origin is dict:
        k, v = typing.get_args(tp)
        assert type(value) is dict, where
        for key, x in value.items():
            conforms(key, k, f"{where} key")
            conforms(x, v, f"{where}[{key!r}]")
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        assert isinstance(value, tp), where
    elif tp is int:
        assert type(value) is int and INT64[0] <= value <= INT64[1], (where, value)
    elif tp is float:
        assert type(value) is float and math.isfinite(value), (where, value)
    else:
        assert type(value) is tp, (where, value)


FUZZ_RECORDINGS = 3000


def test_a_few_thousand_mutated_recordings_read_whole_or_fail_in_one_line(tmp_path):
    seed = int(os.environ.get("SERVERSCOPE_FUZZ_SEED", "2311"))
    rng = random.Random(seed)
    bases = H.valid_snapshots(2)  # the first (no interval yet) and a later one
    header = H.lines(H.HEADER)
    path = tmp_path / "fuzzed.jsonl"
    # one file rewritten in place: a truncating open on ext4 flushes at close (2 ms each)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    read = refused = 0
    for i in range(FUZZ_RECORDINGS):
        data = header + H.mutated_line(rng, rng.choice(bases))
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        try:
            out = list(read_recording(path))
        except FormatError as e:
            refused += 1
            text = str(e)
            assert text.startswith(f"{path}:2: ") and "\n" not in text, (seed, i, text)
            continue
        read += 1
        assert len(out) == 1, (seed, i)
        conforms(out[0], Snapshot, f"seed {seed} recording {i}")
    os.close(fd)
    print(f"\n{FUZZ_RECORDINGS} mutated recordings (seed {seed}): {read} read, {refused} refused")
    assert read > 100 and refused > 1000  # both ways were taken


# -- what reads may still be extreme: the TUI draws it -------------------------------------
def _at_edges(d: Any, i: int, f: float) -> Any:
    """Every int `i` and float `f`, but the fields whose ranges are checked beyond type."""
    if isinstance(d, dict) and "buckets" in d:  # a histogram: its own ranges
        return {**d, **({k: i for k in ("count", "sum_us", "max_us")} if i >= 0 else {})}
    if isinstance(d, dict):
        keep = ("version", "interval_s", "window_s")
        return {k: v if k in keep else _at_edges(v, i, f) for k, v in d.items()}
    if isinstance(d, list):
        return [_at_edges(x, i, f) for x in d]
    if isinstance(d, bool):
        return d
    return i if isinstance(d, int) else f if isinstance(d, float) else d


@pytest.mark.slow
def test_the_replay_screen_draws_values_at_the_edges_of_what_is_read(tmp_path):
    import asyncio

    from tui.app import ServerscopeApp
    from tui.screens.replay import ReplayScreen
    from tui.source import ReplaySource

    snaps = [
        Snapshot.from_dict(_at_edges(d, i, f))
        for i, f in ((INT64[1], 1e308), (INT64[0], -1e308), (0, 0.0), (-1, 5e-324))
        for d in H.valid_snapshots(2)
    ]

    async def play() -> int:
        source = ReplaySource(snaps, name="edges", playing=False)
        app = ServerscopeApp(ReplayScreen(source))
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in snaps:
                await pilot.press("full_stop")  # one frame on
                await pilot.pause()
            shown = source._shown
            await pilot.press("q")
        return shown

    assert asyncio.run(play()) == len(snaps) - 1  # every frame drawn, no exception
