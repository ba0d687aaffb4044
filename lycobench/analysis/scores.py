"""Rank normalisation (the paper's (rank - 1) / (n - 1)), aggregation over leaves, classes and categories,
and t-intervals over seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .columns import CI_LEVEL, CKPT, ID, directions, factor_columns

# --- rank normalisation and aggregation --------------------------------------------------------------


def rank_normalise(raw: pd.DataFrame) -> pd.DataFrame:
    """Add ``score`` in [0, 1] (1 = best) to leaf-level rows: the paper's (rank - 1) / (n - 1) among all
    checkpoints of the sweep, per leaf x metric column, ties averaged, direction-aware.

    Base-model rows (``is_base``) are not in the pool; their score is the one they would get as one more
    checkpoint, (number of pool checkpoints it beats + ties / 2) / n, so a reader can place the base model
    on the same axis. Metrics of unknown direction keep their raw value and get no score.
    """
    df = raw.copy()
    hib = directions(df["metric"].unique())
    df["higher_is_better"] = df["metric"].map(hib).astype("boolean")
    df["score"] = np.nan
    df["pool_n"] = 0
    keys = ["leaf", *ID]
    known = df["higher_is_better"].notna() & df["value"].notna()
    # Sign-adjusted value: larger is always better, so one ascending rank serves both directions.
    good = np.where(df["higher_is_better"].fillna(True), 1.0, -1.0) * df["value"].to_numpy(float)
    df["_g"] = good
    pool = known & ~df["is_base"]
    if pool.any():
        p = df[pool]
        rank = p.groupby(keys, dropna=False)["_g"].rank(method="average", ascending=True)
        n = p.groupby(keys, dropna=False)["_g"].transform("count")
        df.loc[pool, "score"] = ((rank - 1) / (n - 1)).where(n > 1)
        df.loc[pool, "pool_n"] = n.astype(int)
    base = known & df["is_base"]
    if base.any() and pool.any():
        b = df.loc[base, [*keys, "_g"]].reset_index()
        m = b.merge(df.loc[pool, [*keys, "_g"]], on=keys, how="left", suffixes=("", "_pool"))
        m["worse"] = (m["_g_pool"] < m["_g"]).astype(float)
        m["tie"] = (m["_g_pool"] == m["_g"]).astype(float)
        m["inpool"] = m["_g_pool"].notna()
        s = m.groupby("index").agg(worse=("worse", "sum"), tie=("tie", "sum"), n=("inpool", "sum"))
        df.loc[s.index, "score"] = ((s["worse"] + s["tie"] / 2) / s["n"]).where(s["n"] > 0)
        df.loc[s.index, "pool_n"] = s["n"].astype(int)
    return df.drop(columns="_g")


def aggregate(leaf_scores: pd.DataFrame) -> pd.DataFrame:
    """Leaf rows -> rows for every scope: mean over sub-classes (class), over classes (category), over
    categories (all). ``raw`` is averaged the same way, for reading next to the normalised score."""
    keep = (*CKPT, "epoch", "checkpoint", "is_base", *factor_columns(leaf_scores))
    ckpt_cols = [c for c in leaf_scores.columns if c in keep]
    common = [*ckpt_cols, *ID, "higher_is_better"]
    leaf = leaf_scores.rename(columns={"value": "raw"}).assign(scope="leaf", group=leaf_scores["leaf"])
    out = [leaf]
    cls = (
        leaf.groupby([*common, "category", "concept"], dropna=False)
        .agg(raw=("raw", "mean"), score=("score", "mean"), n_leaves=("leaf", "size"))
        .reset_index()
    )
    out.append(cls.assign(scope="class", group=cls["concept"]))
    cat = (
        cls.groupby([*common, "category"], dropna=False)
        .agg(raw=("raw", "mean"), score=("score", "mean"), n_leaves=("n_leaves", "sum"))
        .reset_index()
    )
    out.append(cat.assign(scope="category", group=cat["category"]))
    allc = (
        cat.groupby(common, dropna=False)
        .agg(raw=("raw", "mean"), score=("score", "mean"), n_leaves=("n_leaves", "sum"))
        .reset_index()
    )
    out.append(allc.assign(scope="all", group="all", category="all"))
    res = pd.concat(out, ignore_index=True)
    res["n_leaves"] = res["n_leaves"].fillna(1).astype(int)
    front = ["scope", "group", "category", *ckpt_cols, *ID, "higher_is_better", "raw", "score"]
    rest = [c for c in res.columns if c not in front]
    return res[front + rest]


# --- intervals over seeds ------------------------------------------------------------------------------


def seed_interval(
    df: pd.DataFrame,
    by: list[str],
    value: str,
    unit: str = "seed",
    level: float = CI_LEVEL,
    bounds: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Mean of ``value`` per ``by`` group, with a t-interval over the units' (seeds') means: the rows of
    one training seed are not independent (one run, or runs that share its data order and noise), so a
    seed counts once. mean +- t(level, k - 1) sd / sqrt(k) over the k seeds' means.

    Why not a percentile bootstrap over seeds (what this used before): with the 2-3 seeds of a study its
    interval is the range of the seeds' means (with 3 seeds it misses the true mean a quarter of the
    time); the t-interval is exact for normal seed means and honestly wide with few seeds (2 seeds:
    t = 12.7). One seed, or no spread between seeds: lo = hi = the mean (``n_seeds`` says which).
    ``bounds``: the values' range (normalised scores lie in [0, 1]); the interval is cut to it."""
    from scipy.special import stdtrit

    d = df[[*by, unit, value]].dropna(subset=[value])
    per = d.groupby([*by, unit], dropna=False, sort=True)[value].agg(["sum", "count"]).reset_index()
    per["m"] = per["sum"] / per["count"]
    g = per.groupby(by, dropna=False, sort=False)
    out = g.agg(S=("sum", "sum"), C=("count", "sum"), n_seeds=("m", "size"), sd=("m", "std")).reset_index()
    mean = out["S"] / out["C"]
    k = out["n_seeds"].to_numpy(float)
    t = np.where(k > 1, stdtrit(np.maximum(k - 1, 1), 0.5 + level / 2), 0.0)
    half = np.nan_to_num(t * out["sd"].to_numpy(float) / np.sqrt(k))
    out["mean"], out["lo"], out["hi"] = mean, mean - half, mean + half
    if bounds is not None:
        out["lo"], out["hi"] = out["lo"].clip(*bounds), out["hi"].clip(*bounds)
    return out[[*by, "mean", "lo", "hi", "n_seeds"]]


EXACT_UNITS = 8  # 6435 compositions for 8 seeds


def _compositions(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every count vector of k draws with replacement from k units, and its multinomial probability."""
    from itertools import combinations_with_replacement

    W = np.array([np.bincount(c, minlength=k) for c in combinations_with_replacement(range(k), k)], float)
    logp = math.lgamma(k + 1) - np.sum([[math.lgamma(x + 1) for x in w] for w in W], axis=1) - k * math.log(k)
    return W, np.exp(logp)


def _quantiles(m: np.ndarray, p: np.ndarray | None, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ``a`` quantiles per row of ``m``; with weights ``p``, the inverse of the weighted
    distribution function (the smallest value whose cumulative probability reaches the level)."""
    if p is None:
        q = np.quantile(m, [a, 1 - a], axis=1)
        return q[0], q[1]
    order = np.argsort(m, axis=1, kind="stable")
    ms = np.take_along_axis(m, order, axis=1)
    cdf = np.cumsum(p[order], axis=1)
    eps = 1e-12
    lo = ms[np.arange(len(m)), np.argmax(cdf >= a - eps, axis=1)]
    hi = ms[np.arange(len(m)), np.argmax(cdf >= 1 - a - eps, axis=1)]
    return lo, hi


def seed_summary(scores: pd.DataFrame, scopes=("class", "category", "all")) -> pd.DataFrame:
    """Mean over seeds of score and raw, with t-intervals over seeds, per scope x group x cell x checkpoint x column."""
    s = scores[scores["scope"].isin(scopes)].copy()
    s["seed"] = s["seed"].fillna(-1)
    by = ["scope", "group", "category", "cell", "step", "epoch", "checkpoint", *ID]
    sc = seed_interval(s, by, "score", bounds=(0.0, 1.0)).rename(
        columns={"mean": "score", "lo": "score_lo", "hi": "score_hi"}
    )
    rw = seed_interval(s, by, "raw").rename(columns={"mean": "raw", "lo": "raw_lo", "hi": "raw_hi"})
    out = rw.merge(sc.drop(columns="n_seeds"), on=by, how="left")
    return out.sort_values(by, ignore_index=True)
