"""The hand-written test against an even spread (judging.evenness), held to SciPy's values
(scipy.stats.chi2.sf and binom.sf, SciPy 1.16, printed to full precision) and to an
exact enumeration of the multinomial."""

from __future__ import annotations

import itertools
import math

import pytest

from judging import evenness

# (x, degrees of freedom, scipy.stats.chi2.sf(x, df))
CHI2 = [
    (10.827566170662733, 1, 0.0010000000000000007),
    (13.815510557964274, 2, 0.0010000000000000002),
    (16.26623619623813, 3, 0.0010000000000000007),
    (12.25, 2, 0.002187491118182885),
    (100.0, 100, 0.48119168452795674),
    (149.449, 100, 0.0010000462217732505),
    (1.0, 10, 0.9998278843700441),
    (60.0, 3, 5.878230727906921e-13),
    (2000.0, 1023, 1.0894177425511856e-65),
    (500.0, 400, 0.00048221275959343273),
    (0.5, 7, 0.9994464813904249),
    (1e-9, 1, 0.999974768674784),
    (40.0, 63, 0.9895217674632927),
]

# (k, trials, p, scipy.stats.binom.sf(k - 1, trials, p) = P(X >= k))
BINOM = [
    (6, 8, 0.25, 0.0042266845703125),
    (14, 20, 0.25, 2.9511746106436476e-05),
    (20, 300, 1 / 64, 8.675085942426104e-08),
    (1, 5, 0.5, 0.96875),
]


@pytest.mark.parametrize(("x", "df", "want"), CHI2)
def test_chi2_sf_matches_scipy(x: float, df: int, want: float) -> None:
    assert evenness.chi2_sf(x, df) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(("k", "trials", "p", "want"), BINOM)
def test_binom_sf_matches_scipy(k: int, trials: int, p: float, want: float) -> None:
    assert evenness.binom_sf(k, trials, p) == pytest.approx(want, rel=1e-9)


def test_edges() -> None:
    assert evenness.chi2_sf(0.0, 3) == 1.0
    assert evenness.binom_sf(0, 5, 0.5) == 1.0 and evenness.binom_sf(6, 5, 0.5) == 0.0
    assert evenness.uniform_p([5]) == 1.0 and evenness.uniform_p([0, 0, 0]) == 1.0
    with pytest.raises(ValueError):
        evenness.chi2_sf(1.0, 0)


def test_uniform_p_uses_chi_square_where_every_expected_count_is_five() -> None:
    # 13/11/0 of 24 (expected 8 each): X^2 = 12.25, 2 degrees of freedom
    assert evenness.statistic([13, 11, 0]) == pytest.approx(12.25)
    assert evenness.uniform_p([13, 11, 0]) == pytest.approx(0.002187491118182885, rel=1e-9)


def _exact_max_tail(counts: list[int]) -> float:
    """P(largest count >= max(counts)) for N events over n equal cells, by enumerating
    every composition with its multinomial probability."""
    n, total, top = len(counts), sum(counts), max(counts)
    p = 0.0
    for cut in itertools.combinations(range(total + n - 1), n - 1):
        parts = [b - a - 1 for a, b in zip((-1, *cut), (*cut, total + n - 1), strict=True)]
        if max(parts) >= top:
            ways = math.factorial(total)
            for x in parts:
                ways //= math.factorial(x)
            p += ways / n**total
    return p


@pytest.mark.parametrize("counts", [[6, 1, 1, 0], [9, 2, 1, 0, 0], [5, 2, 1, 0], [3, 3, 2, 0]])
def test_small_expected_counts_get_an_exact_bound_never_below_the_truth(counts: list[int]) -> None:
    exact = _exact_max_tail(counts)
    bound = evenness.uniform_p(counts)
    assert sum(counts) / len(counts) < evenness.CHI2_MIN_EXPECTED
    # (equal when the largest is over half: no two workers can both reach it)
    assert exact * (1 - 1e-12) <= bound <= min(1.0, len(counts) * exact) + 1e-12


def test_p_text_cites_the_tightest_bound() -> None:
    assert evenness.p_text(2e-10) == "p < 1e-9"
    assert evenness.p_text(5e-7) == "p < 1e-6"
    assert evenness.p_text(0.0009) == "p < 0.001"
    assert evenness.p_text(0.0022) == "p = 0.0022"
