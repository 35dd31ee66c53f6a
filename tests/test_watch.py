"""One way to watch (lab.watch.Watch): read -> annotate -> log -> record -> observe, the
same for the lab's models and for an attached server (lab.attach.Attachment), and the
TUI's live feed over either. Pure: a scripted sampler hands out synthetic snapshots."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import synthetic
from lab.attach import ONCE_SPAN_S, Attachment
from lab.watch import Watch
from tui.source import LiveSource
from values.recording import RecordingWriter, read_recording
from values.snapshot import Snapshot


class Scripted:
    """A sampler that hands out `snaps` in turn, then raises (the server exited)."""

    def __init__(self, snaps: list[Snapshot], gone: str = "pid 1000 has exited") -> None:
        self.snaps: Iterator[Snapshot] = iter(snaps)
        self.gone = gone
        self.closed = 0
        self.source = type("Source", (), {"ports": [8080]})()
        self.load = None

    def sample(self) -> Snapshot:
        try:
            return next(self.snaps)
        except StopIteration:
            raise RuntimeError(self.gone) from None

    def close(self) -> None:
        self.closed += 1


def series(n: int, *, queue: int = 0, t0: float = 100.0) -> list[Snapshot]:
    return [synthetic.snapshot(seq=i, time=t0 + 0.25 * i, queue=queue, limit=511) for i in range(n)]


def test_a_sample_is_judged_logged_recorded_and_observed_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    seen: list[Snapshot] = []
    watch = Watch(Scripted(series(3, queue=511)), window_s=2.0)  # type: ignore[arg-type]
    watch.recorder = RecordingWriter(str(path), meta={"t": 1})
    watch.observers.append(seen.append)
    for _ in range(3):
        snap = watch.sample()
        assert snap is not None and snap.window_s == 2.0  # the analyser's, before anyone
        assert seen[-1] is snap and watch.last is snap
    # the deriver read the judged snapshot: the diagnosis the analyser found is logged
    assert [(e.kind, e.message.split(",")[0]) for e in watch.events] == [
        ("overflow", "accept queue overflow started"),
        ("diagnosis", "accept queue overflow: port 8080 queue 511/511 (full within 0.2 s)"),
    ]
    watch.close()
    assert [s.seq for s in read_recording(str(path))] == [0, 1, 2]
    assert all(s.window_s == 2.0 for s in read_recording(str(path)))


def test_settle_covers_the_span_and_delivers_only_the_snapshot_it_shows(tmp_path: Path) -> None:
    """`attach --once --record F` wrote the one snapshot it printed, not the span's."""
    path = tmp_path / "once.jsonl"
    need = int(ONCE_SPAN_S / 0.25) + 1  # the first has no interval
    sampler = Scripted(series(need + 5))
    seen: list[Snapshot] = []
    watch = Watch(sampler, recorder=RecordingWriter(str(path)), observers=[seen.append])  # type: ignore[arg-type]
    snap = watch.settle(ONCE_SPAN_S, 0.0)
    assert snap is not None and snap.seq == need - 1
    assert seen == [snap]
    watch.close()
    assert [s.seq for s in read_recording(str(path))] == [snap.seq]


def test_run_samples_until_stopped_and_another_sampler_is_judged_afresh() -> None:
    stop = threading.Event()
    seen: list[Snapshot] = []

    def observe(snap: Snapshot) -> None:
        seen.append(snap)
        if len(seen) == 4:
            stop.set()

    first = Scripted(series(10))
    watch = Watch(first, observers=[observe])  # type: ignore[arg-type]
    watch.run(0.0, stop)
    assert [s.seq for s in seen] == [0, 1, 2, 3]
    watch.log("model", "stopped")
    analyser = watch.analyser
    watch.watch(Scripted(series(2, t0=500.0)))  # type: ignore[arg-type]
    assert watch.analyser is not analyser and not watch.analyser.history
    assert watch.sample() is not None and len(seen) == 5  # observers and log go on
    assert [e.message for e in watch.events] == ["stopped"]
    watch.watch(None)
    assert watch.sample() is None
    assert first.closed == 0  # closing a replaced sampler is its owner's


def test_an_attached_server_that_exits_ends_the_watch_once() -> None:
    sampler = Scripted(series(2), gone="pid 1000 has exited")
    att = Attachment(sampler, window_s=5.0)  # type: ignore[arg-type]
    feed = LiveSource(att)
    assert feed.next() is not None and feed.next() is not None
    assert feed.next() is None and feed.next() is None
    assert feed.ended == att.ended == "pid 1000 has exited"
    kinds = [(e.kind, e.message) for e in feed.events()]
    assert kinds[0] == ("model", "attached to many_accepts (root pid 1000)")
    assert kinds[-1] == ("death", "server gone: pid 1000 has exited")
    assert sum(k == "death" for k, _ in kinds) == 1
    assert len(feed.history()) == 2 and feed.pids() == []
    feed.close()
    feed.close()
    assert sampler.closed == 1 and att.closed


def test_a_closed_attachment_samples_no_more() -> None:
    sampler = Scripted(series(5))
    att = Attachment(sampler, window_s=5.0)  # type: ignore[arg-type]
    assert att.sample() is not None
    att.close()
    assert att.sample() is None and sampler.closed == 1


def test_an_attachment_records_with_the_target_the_user_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    att = Attachment(Scripted(series(2)), port=8080)  # type: ignore[arg-type]
    att.record(str(path))
    att.sample()
    att.close()
    first = path.read_text().splitlines()[0]
    assert '"attach": {"pid": null, "port": 8080}' in first, first


def test_the_live_feed_refuses_a_session_it_does_not_have() -> None:
    feed = LiveSource(Attachment(Scripted([])))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _ = feed.session
    feed.close()
