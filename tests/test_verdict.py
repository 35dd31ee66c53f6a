"""`serverscope diff`'s engine on synthetic recordings: what it finds, what it does not, and
how it reads a recording (judging.windows, resample, verdict); the diff command's
outputs and its one-line refusals; the remedy table of `fix` (lab.fix)."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import synthetic
from commands.main import main
from judging import resample, verdict, verdict_values, windows
from judging.resample import np  # numpy, with one BLAS thread
from lab import fix
from loadgen.histogram import NBUCKETS, Histogram, bucket_bounds
from plumbing import loghist
from servers.config import ServerConfig
from values.recording import RecordingWriter
from values.snapshot import Snapshot


def rec(seed: int, count: int = 40, **kw: object) -> windows.Recording:
    return windows.read(synthetic.noisy(count, seed=seed, **kw), f"seed{seed}")  # type: ignore[arg-type]


def write(path: Path, snaps: list[Snapshot]) -> str:
    with RecordingWriter(path) as w:
        for s in snaps:
            w.write(s)
    return str(path)


# -- the verdict ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup",
    [{}, {"weights": [6, 1, 1, 1], "queue": 4.0}, {"latency_ms": 40.0, "spread": 1.0}],
    ids=["even", "skewed", "slow"],
)
def test_two_recordings_of_one_setup_show_no_significant_difference(setup: dict) -> None:
    for seed in (11, 12, 13):
        v = verdict.judge(rec(2 * seed, **setup), rec(2 * seed + 1, **setup))
        assert len(v.tested) >= 7, [r.key for r in v.tested]
        assert not v.differences, v.headline()
        assert v.headline().startswith("no significant difference in")


def test_a_known_difference_is_found_with_its_direction_and_interval() -> None:
    before = rec(1)
    after = rec(2, weights=[6, 1, 1, 1], latency_ms=10.0)
    v = verdict.judge(before, after)
    top = v.row("accept_top_share")
    assert top is not None and top.significant and top.direction == "worse"
    assert top.p_holm is not None and top.p_holm < 0.001 and top.p_text() == "p < 0.001"
    assert top.before is not None and top.after is not None
    assert top.before < 0.3 < 0.6 < top.after  # 1/4 even; 6/9 of the accepts to one
    assert top.interval is not None and top.interval[0] < top.change < top.interval[1]  # type: ignore[operator]
    p50 = v.row("latency_p50")
    assert p50 is not None and p50.significant and p50.direction == "worse"
    assert p50.change is not None and 0.8 < p50.change < 1.2  # 5 ms -> 10 ms: x2
    throughput = v.row("throughput")
    assert throughput is not None and throughput.tested and not throughput.significant
    # the other way round: the same differences, better
    back = verdict.judge(after, before)
    assert back.row("accept_top_share").direction == "better"  # type: ignore[union-attr]
    assert "top share of accepts" in back.headline(("accept_top_share",))


def test_a_busier_machine_leaves_timing_differences_unjudged_not_put_down_to_the_setup() -> None:
    # the same setup twice, but others took 1.5 cores more of the machine in the second run
    # and its latencies came out 1.5x longer (what real same-setup pairs showed: 0.17 then
    # 1.34 cores used by others, service p99 1.9 -> 5.4 ms, p = 0.002)
    quiet, busy = rec(1, other_cores=0.1), rec(2, other_cores=1.6, latency_ms=7.5)
    v = verdict.judge(quiet, busy)
    ctx = v.row("other_cpu")
    assert ctx is not None and ctx.significant and ctx.better == 0
    assert ctx.direction == "differs: the machine, not the setup"
    assert ctx.before is not None and ctx.after is not None
    assert abs(ctx.before - 0.1) < 0.05 and abs(ctx.after - 1.6) < 0.05  # in cores
    p50 = v.row("latency_p50")
    assert p50 is not None and p50.p_holm is not None and p50.p_holm < 0.001  # found...
    assert not p50.significant and p50.confounded  # ...but not the setup's
    assert p50.direction.startswith("not judged: the rest of the machine used 0.")
    assert not v.differences and ctx not in v.differences
    assert v.headline().startswith("no significant difference in")
    assert "not judged: the rest of the machine used" in v.headline()
    # a skew where a hash deals the connections (reuseport) is the setup's whatever the load
    dealt = rec(1, other_cores=0.1, mechanism="reuseport")
    skewed = verdict.judge(
        dealt, rec(3, other_cores=1.6, weights=[6, 1, 1, 1], mechanism="reuseport")
    )
    found = {r.key for r in skewed.differences}
    assert {"accept_top_share", "accept_jain", "cpu_top_share"} <= found, found
    assert not found & {"throughput", "latency_p50", "latency_p99"}, found
    # ...but not where the workers share a queue (the free one takes it), or it was not read
    for mechanism in ("shared", None):
        before = rec(1, other_cores=0.1, mechanism=mechanism)
        after = rec(3, other_cores=1.6, weights=[6, 1, 1, 1], mechanism=mechanism)
        shared = verdict.judge(before, after)
        top = shared.row("accept_top_share")
        assert top is not None and top.p_holm is not None and top.p_holm < 0.001, mechanism
        assert not top.significant and top.confounded and not shared.differences, mechanism
        # the same skew on an equally busy machine: judged
        same = verdict.judge(rec(1, other_cores=1.6, mechanism=mechanism), after)
        assert same.row("accept_top_share").direction == "worse", mechanism  # type: ignore[union-attr]
    # the same machine both times: the same latency difference is the setup's
    same = verdict.judge(rec(1, other_cores=1.6), busy)
    assert same.row("other_cpu").significant is False  # type: ignore[union-attr]
    assert same.row("latency_p50").direction == "worse"  # type: ignore[union-attr]


def test_the_rest_of_the_machine_is_the_host_less_the_server_generator_and_sampler() -> None:
    snap = synthetic.snapshot(seq=1, interval_s=0.5, workers=2, cpu=[30.0, 20.0], host_cpu=150.0)
    snap = dataclasses.replace(snap, cost_ms=5.0)
    # host 1.5 cores x 0.5 s = 0.75 s; server 0.25 s; generator 0.1 s; sampler 0.005 s
    assert windows.other_cpu(snap, 0.1) == pytest.approx(0.75 - 0.25 - 0.1 - 0.005)
    assert windows.other_cpu(dataclasses.replace(snap, host=None), 0.1) is None
    # never below 0 (the readings are of slightly different instants)
    assert windows.other_cpu(snap, 1.0) == 0.0


def test_a_diagnosis_is_judged_over_windows_as_long_as_the_rule_s_own() -> None:
    """A rule holds over the analyser's 5 s window, so 40 samples of 0.25 s are 2 windows
    each: too few to judge. 160 samples are 8 each: a rule always on against never is."""
    short = verdict.judge(rec(1, rules=[("accept_skew", 1.0)]), rec(2))
    row = short.row("diagnosis:accept_skew")
    assert row is not None and not row.tested and row.note.startswith("too short: 2 + 2 windows")
    assert row.shown == ("100% of the time", "0% of the time")
    long = verdict.judge(rec(1, 160, rules=[("accept_skew", 1.0)]), rec(2, 160))
    row = long.row("diagnosis:accept_skew")
    assert row is not None and row.significant and row.change == -1.0
    assert row.direction == "better" and row.p_holm is not None and row.p_holm < 0.001


def test_a_recording_made_before_latency_histograms_shows_the_run_s_percentiles_untested() -> None:
    def old(snaps: list[Snapshot]) -> list[Snapshot]:
        return [
            dataclasses.replace(s, client=dataclasses.replace(s.client, latency_hist=None))
            if s.client
            else s
            for s in snaps
        ]

    a = windows.read(old(synthetic.noisy(40, seed=1)), "a")
    b = windows.read(old(synthetic.noisy(40, seed=2, latency_ms=20.0)), "b")
    v = verdict.judge(a, b)
    p99 = v.row("latency_p99")
    assert p99 is not None and not p99.tested and "percentiles only" in p99.note
    assert p99.shown[0].endswith("ms") and p99.shown[1].endswith("ms")  # the client's own


def test_an_attached_server_is_judged_on_what_attach_measures() -> None:
    """No load generator (attach): no throughput, no client latency; the rate of accepts
    stands for throughput, and the idle samples before the traffic are left out."""

    def attached(seed: int, **kw: object) -> windows.Recording:
        busy = synthetic.noisy(40, seed=seed, **kw)
        quiet = synthetic.noisy(6, seed=seed, accepts_per_s=0.0)  # no connection comes
        snaps = [*quiet, *(dataclasses.replace(s, time=s.time + 2.0) for s in busy[1:])]
        return windows.read([dataclasses.replace(s, client=None) for s in snaps], f"a{seed}")

    a, b = attached(1), attached(2, weights=[6, 1, 1, 1])
    assert len(a.samples) == 40  # the 6 quiet samples before the traffic: out
    v = verdict.judge(a, b)
    assert v.row("throughput") is not None and v.row("throughput").shown == ("-", "-")  # type: ignore[union-attr]
    rate = v.row("accept_rate")
    assert rate is not None and rate.tested and not rate.significant
    assert rate.shown[0].endswith("/s")
    assert v.row("accept_top_share").significant  # type: ignore[union-attr]
    with_client = verdict.judge(rec(1), rec(2))
    assert with_client.row("accept_rate") is None  # the client's throughput is compared


def test_too_short_a_recording_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="1 samples: too short to judge"):
        verdict.judge(rec(1, 1), rec(2))


# -- reading a recording ------------------------------------------------------------------------


def test_windows_sum_to_the_recording_s_own_totals_and_skip_the_idle_edges() -> None:
    snaps = synthetic.noisy(30, seed=5)
    idle = [
        dataclasses.replace(snaps[0], seq=-2, time=990.0, interval_s=None, client=None),
        dataclasses.replace(snaps[0], seq=-1, time=999.75, interval_s=0.25, client=None),
    ]
    r = windows.read([*idle, *snaps], "r")
    assert len(r.samples) == 30  # the baseline and the idle sample before the load: out
    last = snaps[-1].client
    assert last is not None and last.latency_hist is not None
    assert sum(s.requests or 0 for s in r.samples) == last.requests
    w = windows.cut(r, 4, [])
    assert w.count == 7 and w.samples.sum() == 30  # 7 windows, the last of 6 samples
    assert w.latency.sum() == last.latency_hist.count
    assert w.accepts.sum() == sum(snaps[-1].workers[i].accepts_total or 0 for i in range(4))
    merged = loghist.LogHist.from_counts(
        [int(c) for c in w.latency.sum(axis=0)], last.latency_hist.sum_us, last.latency_hist.max_us
    )
    assert merged.quantile_ms(0.99) == last.latency_hist.quantile_ms(0.99)


def test_a_restarted_load_counts_from_zero_and_a_shrunken_phase_sum_is_left_out() -> None:
    a, b = synthetic.noisy(10, seed=1), synthetic.noisy(10, seed=2)
    later = [dataclasses.replace(s, time=s.time + 100, interval_s=0.25) for s in b[1:]]
    r = windows.read([*a, *later], "r")
    assert a[-1].client is not None and b[-1].client is not None
    assert sum(s.requests or 0 for s in r.samples) == a[-1].client.requests + b[-1].client.requests
    # the server's phases summed over workers went backwards (a worker gone): unknown there
    assert r.samples[10].phases[2] is None and r.samples[11].phases[2] is not None


def test_decorrelation_lag_reads_white_noise_as_1_and_a_slow_series_as_longer() -> None:
    rng = np.random.default_rng(3)
    assert windows.decorrelation_lag(rng.normal(size=400).tolist(), 50) <= 2
    ar = [0.0]
    for _ in range(399):
        ar.append(0.9 * ar[-1] + rng.normal())
    assert windows.decorrelation_lag(ar, 50) >= 5
    assert windows.decorrelation_lag([3.0] * 50, 10) == 1


# -- the statistics ---------------------------------------------------------------------------


def test_the_permutation_test_is_calibrated_under_no_difference() -> None:
    """200 pairs of groups drawn alike: p < 0.05 about 5% of the time, p < 0.2 about 20%."""
    rng = np.random.default_rng(7)
    ps = []
    for _ in range(200):
        a = {"x": rng.exponential(size=12), "n": np.ones(12)}
        b = {"x": rng.exponential(size=12), "n": np.ones(12)}
        stat = (lambda s: resample.ratio(s["x"], s["n"]), ("x", "n"), False)
        ps.append(resample.permutation(a, b, [stat], draws=400, rng=rng)[0].p)
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.10
    assert 0.12 <= np.mean(np.array(ps) < 0.2) <= 0.28


def test_holm_adjusts_step_down() -> None:
    assert resample.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_quantiles_over_window_sums_read_as_loghist_reads_them() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        values = rng.lognormal(8, 2, 500).astype(int)
        dense = [0] * loghist.NBUCKETS
        for v in values:
            dense[loghist.index_of(int(v))] += 1
        h = loghist.LogHist.from_counts(dense, int(values.sum()), int(values.max()))
        for q in (0.5, 0.99):
            got = resample.quantile_ms(
                np.array([dense], float), np.array([h.max_us]), q, windows.MID_US
            )
            assert math.isclose(got[0], h.quantile_ms(q) or 0.0)


def test_the_client_histogram_converts_to_loghist_without_moving_a_value_s_bucket() -> None:
    for i in range(NBUCKETS):  # each of its buckets inside one of LogHist's
        low, high = bucket_bounds(i)
        assert loghist.index_of(low) == loghist.index_of(high - 1)
    h = Histogram()
    values = [0, 5, 255, 256, 1000, 123_456, 59_999_999, 70_000_000]
    for v in values:
        h.record_us(v)
    lh = h.to_loghist()
    want = [0] * loghist.NBUCKETS
    for v in values:
        want[loghist.index_of(min(v, 60_000_000))] += 1
    assert lh.dense() == want and lh.count == len(values) and lh.max_us == h.max_us


# -- the diff command -------------------------------------------------------------------------


def test_diff_prints_the_table_and_writes_json_and_svg(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    a = write(tmp_path / "a.jsonl", synthetic.noisy(40, seed=1))
    b = write(tmp_path / "b.jsonl", synthetic.noisy(40, seed=2, weights=[6, 1, 1, 1]))
    out, svg = tmp_path / "v.json", tmp_path / "v.svg"
    assert main(["diff", a, b, "--json", str(out), "--svg", str(svg)]) == 0
    text = capsys.readouterr().out
    assert "top share of accepts" in text and "p < 0.001" in text and "worse" in text
    assert "verdict: " in text and "a permutation test over windows" in text
    data = json.loads(out.read_text())
    assert data["before"]["recording"] == "a.jsonl" and data["alpha"] == verdict_values.ALPHA
    row = next(f for f in data["figures"] if f["figure"] == "accept_top_share")
    assert row["significant"] and row["p_holm"] < 0.001 and row["verdict"] == "worse"
    assert "accept_top_share" in data["differences"]
    root = ET.fromstring(svg.read_text())
    assert "top share of accepts" in "".join(root.itertext())
    # JSON on stdout, nothing else
    assert main(["diff", a, b, "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["headline"] == data["headline"]


def test_diff_refuses_what_it_cannot_judge_in_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    good = write(tmp_path / "a.jsonl", synthetic.noisy(10, seed=1))
    junk = tmp_path / "junk.jsonl"
    junk.write_text("hello\n")
    short = write(tmp_path / "s.jsonl", synthetic.noisy(1, seed=1))
    cases = [
        ([str(tmp_path / "none.jsonl"), good], "No such file"),
        ([str(junk), good], "not a serverscope recording"),
        ([good, short], "too short to judge"),
        ([good, str(tmp_path)], "a directory"),
    ]
    for args, why in cases:
        assert main(["diff", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and why in err and err.startswith("serverscope diff:")
        assert "Traceback" not in err


# -- fix's remedies ---------------------------------------------------------------------------


SKEW = ("accept_skew", "accept skew: worker 0 took 96% of accepts")
KEEPALIVE = ("starvation", "starvation: ... while 20/20 workers hold idle keep-alive connections")
READING = ("starvation", "starvation: ... while 20/20 workers hold requests still arriving")


def test_each_diagnosis_gets_the_remedy_its_mechanism_asks_for() -> None:
    cfg = ServerConfig(model="many_accepts", workers=4, exclusive=True)
    remedy, message, rule = fix.choose(cfg, [("server_wait", "in-server wait"), SKEW])
    assert (remedy.name, rule, message) == ("reuseport", "accept_skew", SKEW[1])
    after = remedy.change(cfg)
    assert (after.model, after.workers, after.exclusive) == ("reuseport", 4, False)
    assert fix.choose(cfg, [SKEW], "cluster")[0].change(cfg).model == "cluster"
    prefork = ServerConfig(model="prefork", max_workers=20)
    assert fix.choose(prefork, [KEEPALIVE])[0].name == "event"
    assert fix.choose(prefork, [READING])[0].name == "read-timeout"
    single = ServerConfig(model="single", backlog=16)
    assert fix.choose(single, [("accept_queue_overflow", "overflow")])[0].name == "backlog"
    many = fix.choose(cfg, [("accept_queue_overflow", "overflow")])[0]
    assert many.name == "more-workers" and many.change(cfg).workers == 8
    gil = fix.choose(ServerConfig(model="goroutines"), [("gil_cap", "GIL")])[0].change(
        ServerConfig(model="goroutines")
    )
    assert gil.model == "reuseport" and gil.workers == fix.CORES
    with pytest.raises(fix.NothingToFix, match="seen: server_wait"):
        fix.choose(cfg, [("server_wait", "in-server wait")])
    with pytest.raises(fix.NothingToFix, match="no remedy 'event' for many_accepts"):
        fix.choose(cfg, [], "event")


def test_every_remedy_gives_a_setup_its_model_accepts() -> None:
    from lab.server import model_spec

    for remedy in fix.REMEDIES:
        for model in (
            "single",
            "prefork",
            "worker",
            "event",
            "cluster",
            "many_accepts",
            "goroutines",
        ):
            cfg = ServerConfig(model=model)
            if remedy.applies(cfg):
                after = remedy.change(cfg)
                model_spec(after.model).resolve(after)  # ConfigError if it refused a knob
                assert after != cfg, (remedy.name, model)
