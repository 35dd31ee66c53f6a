"""Could chance alone have spread these counts this unevenly? A test against an even spread.

The skew rules judge counts (accepts per worker, connections held per worker) against the
null hypothesis that each event picked a worker uniformly at random: a multinomial sample
of N events over n equally likely workers. Its p-value:

- where every expected count N/n is at least CHI2_MIN_EXPECTED (5, the textbook condition
  for the approximation): Pearson's X^2 = sum (x_i - N/n)^2 / (N/n) against chi-square
  with n - 1 degrees of freedom (for an even null X^2 = N (1/J - 1), J Jain's index);
- below that: an exact test on the largest count m, the one the verdict names ("pid X
  took 71%"): P(max >= m) <= n P(Binomial(N, 1/n) >= m), the binomial tail summed exactly
  and multiplied by n (the union bound over workers). It can only overstate p, so
  "p < 0.001" stays true; it costs O(N), where a Monte Carlo multinomial test needs
  thousands of draws of N events (measured: 0.2 s for 300 events over 64 workers).

Hand-written, not SciPy: `scipy.stats.chi2.sf` and `binom.sf` are two functions of a
~40 MB dependency (SciPy plus NumPy wheels). For integer degrees of freedom the chi-square
survival function has a closed form (the regularized upper incomplete gamma function at
an integer or half-integer shape: a finite Poisson sum, plus erfc for odd degrees), a
dozen lines of `math`; tests/test_evenness.py holds both to SciPy's values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CHI2_MIN_EXPECTED = 5.0  # expected count per cell from which the chi-square law is used
ALPHA = 0.001  # the significance the rules ask of a skew


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square with `df` (a positive integer) degrees of freedom.

    Q(df/2, x/2), the regularized upper incomplete gamma function, in closed form:
    even df: exp(-y) sum_{i < df/2} y^i / i!; odd df: erfc(sqrt y) plus
    exp(-y) sum_{i=1}^{(df-1)/2} y^(i-1/2) / Gamma(i+1/2), with y = x/2. The terms are
    summed in log space so that no factor under- or overflows (df up to thousands)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, not {df}")
    if x <= 0.0:
        return 1.0
    y = x / 2.0
    ln_y = math.log(y)
    if df % 2 == 0:
        terms = [math.exp(-y + i * ln_y - math.lgamma(i + 1)) for i in range(df // 2)]
        return min(1.0, math.fsum(terms))
    terms = [
        math.exp(-y + (i - 0.5) * ln_y - math.lgamma(i + 0.5)) for i in range(1, (df + 1) // 2)
    ]
    return min(1.0, math.erfc(math.sqrt(y)) + math.fsum(terms))


def statistic(counts: Sequence[int]) -> float:
    """Pearson's X^2 of `counts` against an even spread over len(counts) cells."""
    n, total = len(counts), sum(counts)
    if n < 2 or total <= 0:
        return 0.0
    e = total / n
    return sum((c - e) * (c - e) for c in counts) / e


def binom_sf(k: int, trials: int, prob: float) -> float:
    """P(X >= k) for X ~ Binomial(trials, prob), summed exactly (in log space)."""
    if k <= 0:
        return 1.0
    if k > trials:
        return 0.0
    lq, lp = math.log1p(-prob), math.log(prob)
    head = math.lgamma(trials + 1)
    terms = [
        math.exp(
            head - math.lgamma(i + 1) - math.lgamma(trials - i + 1) + i * lp + (trials - i) * lq
        )
        for i in range(k, trials + 1)
    ]
    return min(1.0, math.fsum(terms))


def uniform_p(counts: Sequence[int]) -> float:
    """The p-value of `counts` against an even spread (1.0 with fewer than 2 cells or no
    events): chi-square where every expected count is >= CHI2_MIN_EXPECTED, else the
    exact bound on the largest count."""
    n, total = len(counts), sum(counts)
    if n < 2 or total <= 0:
        return 1.0
    if total / n >= CHI2_MIN_EXPECTED:
        return chi2_sf(statistic(counts), n - 1)
    return min(1.0, n * binom_sf(max(counts), total, 1.0 / n))


def p_text(p: float) -> str:
    """How a verdict cites its p-value: the tightest of these bounds it is below
    ("p < 1e-9", "p < 1e-6", "p < 0.001"), else "p = 0.004"."""
    for bound, text in ((1e-9, "1e-9"), (1e-6, "1e-6"), (ALPHA, "0.001")):
        if p < bound:
            return f"p < {text}"
    return f"p = {p:.2g}"
