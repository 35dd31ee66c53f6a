"""Load generator pieces that need no server: histogram, levels, target checks, CLI args."""

from __future__ import annotations

import math
import random

import pytest

from commands import load as loadgen_cli
from commands.main import build_parser
from loadgen.engine import resolve
from loadgen.histogram import NBUCKETS, Histogram, bucket_bounds, index_of
from loadgen.levels import PRESET_HELP, PRESETS, LoadError, LoadLevel
from loadgen.runner import LoadRunner, check_fd_limit

# -- histogram ---------------------------------------------------------------------------


def test_buckets_tile_1us_to_60s() -> None:
    assert bucket_bounds(0) == (0, 1)
    for i in range(NBUCKETS - 1):
        assert bucket_bounds(i)[1] == bucket_bounds(i + 1)[0]
    for v in (1, 255, 256, 257, 1000, 65_535, 1_000_000, 59_999_999, 60_000_000):
        low, high = bucket_bounds(index_of(v))
        assert low <= v < high
        if v < 256:
            assert low == v  # whole microseconds below 256 are exact
        else:
            assert (high - low) / v <= 0.01  # a bucket is under 1% of its values wide
    assert index_of(10**9) == NBUCKETS - 1


@pytest.mark.parametrize("seed", [1, 2])
def test_percentiles_within_one_percent(seed: int) -> None:
    rng = random.Random(seed)
    # log-uniform from 1 us to 60 s: every decade of the range gets values
    values = [int(math.exp(rng.uniform(0, math.log(60e6)))) for _ in range(20_000)]
    h = Histogram()
    for v in values:
        h.record_us(v)
    values.sort()
    p = h.percentiles()
    for q, got in ((0.5, p.p50), (0.9, p.p90), (0.99, p.p99), (0.999, p.p999)):
        exact = values[math.ceil(q * len(values)) - 1] / 1000.0
        assert abs(got - exact) <= 0.01 * exact + 0.0005, (q, got, exact)
    assert p.max == values[-1] / 1000.0
    assert p.count == len(values)


def test_histogram_round_trips_through_its_compact_form() -> None:
    merged = Histogram()
    for v in (5, 500, 5000):
        merged.record_us(v)
    for v in (50, 50_000):
        merged.record(v / 1e6)
    assert merged.count == 5 and merged.max_us == 50_000 and merged.min_us == 5
    back = Histogram.from_dict(merged.to_dict())
    assert back.counts == merged.counts and back.percentiles() == merged.percentiles()
    assert back.count_at_least(1.0) == 2  # 5 ms and 50 ms
    assert Histogram().percentiles().count == 0


# -- levels ------------------------------------------------------------------------------


def test_presets_are_documented_and_valid() -> None:
    required = {"light", "steady", "burst", "storm", "keepalive-idle", "slow-io", "overload"}
    assert required <= set(PRESETS)
    assert set(PRESET_HELP) == set(PRESETS)
    for name, level in PRESETS.items():
        assert level.name == name
        level.check()
    assert PRESETS["burst"].keepalive and PRESETS["burst"].ramp == 0
    assert PRESETS["burst"].clients >= 15 and PRESETS["burst"].rate is None
    assert not PRESETS["storm"].keepalive
    assert PRESETS["keepalive-idle"].think_ms >= 1000 and PRESETS["keepalive-idle"].keepalive
    assert PRESETS["overload"].rate is not None


def test_level_target_and_checks() -> None:
    assert LoadLevel().target == "/"
    assert LoadLevel(cpu_ms=2, bytes=10).target == "/work?cpu_ms=2&io_ms=0&bytes=10"
    with pytest.raises(LoadError, match="clients must be between"):
        LoadLevel(clients=0).check()
    with pytest.raises(LoadError, match="duration"):
        LoadLevel(duration=float("nan")).check()
    lvl = LoadLevel(rate=5.0, think_exp=True)
    assert LoadLevel.from_json(lvl.to_json()) == lvl


# -- safety checks -----------------------------------------------------------------------


def test_remote_target_refused_unless_allowed() -> None:
    with pytest.raises(LoadError, match=r"not on loopback.*--allow-remote"):
        resolve("http://10.1.2.3:8080/")
    with pytest.raises(LoadError, match="not on loopback"):
        LoadRunner("http://192.0.2.1/", LoadLevel()).start()
    assert resolve("http://10.1.2.3:8080/", allow_remote=True).loopback is False
    for url in ("http://127.0.0.1:1/", "http://127.8.9.10:1/", "http://[::1]:1/", "localhost:1"):
        assert resolve(url).loopback
    t = resolve("http://localhost:8080/x?y=1")
    assert t.addr == "127.0.0.1" and t.path == "/x?y=1" and t.host_header == "localhost:8080"


def test_client_count_above_file_limit_refused_in_one_line() -> None:
    with pytest.raises(LoadError) as e:
        check_fd_limit(50_000_000)
    msg = str(e.value)
    assert "\n" not in msg and "ulimit -n" in msg and "limit is" in msg
    assert check_fd_limit(10) >= 74


def test_cli_builds_levels_from_presets_and_options() -> None:
    p = build_parser()
    a = p.parse_args(["load", "http://127.0.0.1:1/", "--preset", "burst", "--duration", "3"])
    lvl = loadgen_cli.level_from_args(a)
    assert lvl == PRESETS["burst"].with_(duration=3.0)
    a = p.parse_args(
        ["load", "127.0.0.1:1", "--clients", "7", "--rate", "50", "--close", "--think", "5"]
    )
    lvl = loadgen_cli.level_from_args(a)
    assert (lvl.name, lvl.clients, lvl.rate, lvl.keepalive, lvl.think_ms) == (
        "custom",
        7,
        50.0,
        False,
        5.0,
    )


def test_cli_refuses_remote_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from commands.main import main

    assert main(["load", "http://10.9.9.9/", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-remote" in err


def test_connect_times_are_counted_by_whole_second_for_syn_retransmits() -> None:
    h = Histogram()
    for v in (0.0002, 0.4, 1.01, 1.02, 0.98, 2.04, 2.05, 3.06, 40.0):
        h.record(v)
    assert h.by_second(upto=15) == (3, 2, 1) + (0,) * 11 + (1,)
    fast = Histogram()
    fast.record(0.0003)
    assert fast.by_second() == ()  # nothing slow: nothing to show
