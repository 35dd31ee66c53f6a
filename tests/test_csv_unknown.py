"""`run --csv`: a sample before the client has any latency says so with an empty cell,
never 0. Seen: `serverscope run --model c:single --load light --duration 2 --csv c.csv`,
first row `rps 0.0, requests 0, latency_p50_ms 0.0, latency_p99_ms 0.0, connect_p99_ms
0.0` (the generator's Percentiles default, count 0), beside an empty oldest_wait_ms."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import synthetic
from lab.aggregate import SummaryBuilder, write_csv
from loadgen.levels import PRESETS
from loadgen.stats import Percentiles


def test_no_latency_yet_is_an_empty_cell_not_zero(tmp_path: Path) -> None:
    snaps = synthetic.series(3, accepts=[1, 1])
    quiet = synthetic.load_stats(requests=0)
    quiet = dataclasses.replace(quiet, latency_ms=Percentiles(), connect_ms=Percentiles())
    first = dataclasses.replace(snaps[1], client=quiet)
    later = dataclasses.replace(snaps[2], client=synthetic.load_stats(latency_p99=5.0))
    b = SummaryBuilder("many_accepts", "many_accepts", PRESETS["light"])
    b.start_clock(snaps[0].time)
    for s in (snaps[0], first, later):
        b.add(s)
    path = tmp_path / "run.csv"
    write_csv(str(path), b.finish(None, duration_s=0.5))
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    row = next(r for r in rows if r["requests"] == "0")
    for col in ("latency_p50_ms", "latency_p99_ms", "connect_p99_ms"):
        assert row[col] == "", (col, row)
    measured = rows[-1]
    assert measured["latency_p99_ms"] == "5.0", measured
