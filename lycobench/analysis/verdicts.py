"""The statistics behind a verdict, as pure functions: a t-interval over paired effects, the verdict it
gives for an expected direction, and Kendall's tau with a bootstrap interval over seeds."""

from __future__ import annotations

import math

import numpy as np

from .columns import CI_LEVEL, N_BOOT

VERDICTS = ("reproduced", "contradicted", "inconclusive", "not tested")
EXPECT = {"better": 1.0, "worse": -1.0}


def t_interval(x, level: float = CI_LEVEL) -> tuple[float, float, float]:
    """Mean of the paired effects ``x`` and its two-sided t-interval (n - 1 degrees of freedom).

    Why t and not a bootstrap: the pairs are few (a study has 2-3 seeds), and a percentile bootstrap over
    n units cannot reach past their extremes: with 3 units its "95%" interval is the range, which misses
    the mean a quarter of the time. The t-interval is exact for normal effects and wide when n is small,
    as it should be. Fewer than two values, or no spread between them (discrete rank scores can repeat
    exactly; a zero-width interval would claim certainty): no interval (NaN bounds)."""
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if len(x) < 2 or np.ptp(x) == 0:
        return m, math.nan, math.nan
    from scipy.special import stdtrit  # the t quantile, without importing scipy.stats (seconds)

    half = float(stdtrit(len(x) - 1, 0.5 + level / 2)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, m - half, m + half


def verdict(lo: float, hi: float, expect: str, n_pairs: int) -> str:
    """reproduced: the whole interval lies on the expected side of 0; contradicted: on the other side;
    inconclusive: it holds 0, or there is no interval (one pair); not tested: no pair at all."""
    if n_pairs == 0:
        return "not tested"
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    sign = EXPECT[expect]
    if sign * lo > 0 and sign * hi > 0:
        return "reproduced"
    if sign * lo < 0 and sign * hi < 0:
        return "contradicted"
    return "inconclusive"


def kendall_tau(x, y) -> float:
    """Kendall's tau-b (concordant minus discordant pairs over the geometric mean of the untied pairs on
    each side, as scipy.stats.kendalltau); NaN when either side is constant. A handful of items: O(n^2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    i, j = np.triu_indices(len(x), 1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    return float((sx * sy).sum() / math.sqrt(np.count_nonzero(sx) * np.count_nonzero(sy)))


def tau_bootstrap(
    per_seed: np.ndarray, reference, n_boot: int = N_BOOT, level: float = CI_LEVEL, seed: int = 0
) -> tuple[float, float, float]:
    """Kendall's tau between the items' means over seeds and ``reference`` (higher = better on both
    sides), with a percentile bootstrap interval that resamples seeds: every item of a resample is
    averaged over the same drawn seeds, so the items stay paired. ``per_seed``: items x seeds. Up to
    ``scores.EXACT_UNITS`` seeds every resample is enumerated with its probability (no Monte Carlo noise);
    with 2-3 seeds the interval is close to the range of the single-seed taus."""
    from .scores import EXACT_UNITS, _compositions, _quantiles

    M = np.asarray(per_seed, float)
    tau = kendall_tau(M.mean(1), reference)
    k = M.shape[1]
    if k < 2 or math.isnan(tau):
        return tau, tau, tau
    if k <= EXACT_UNITS:
        W, p = _compositions(k)
    else:
        idx = np.random.default_rng([seed, k]).integers(0, k, (n_boot, k))
        W, p = np.stack([np.bincount(i, minlength=k) for i in idx]).astype(float), None
    means = M @ W.T / k  # items x resamples
    taus = np.array([kendall_tau(means[:, j], reference) for j in range(means.shape[1])])
    taus = np.nan_to_num(taus, nan=0.0)  # a resample that ties every item agrees with nothing
    lo, hi = _quantiles(taus[None, :], p, (1 - level) / 2)
    return tau, float(lo[0]), float(hi[0])


def agreement(tau: float, lo: float, hi: float) -> str:
    """agrees: the interval lies above 0; disagrees: below; unclear: it holds 0 (or there is no tau)."""
    if math.isnan(tau):
        return "unclear"
    if lo > 0:
        return "agrees"
    if hi < 0:
        return "disagrees"
    return "unclear"
