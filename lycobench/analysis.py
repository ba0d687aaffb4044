"""The paper's analysis on tidy tables: rank normalisation, aggregation, bootstrap CIs, paired comparisons,
factor levels, criteria, best checkpoints and overfitting alarms (reference/paper-protocol.md, sections 6-8).

Every function takes and returns pandas frames (or arrays) and writes no file, so it can be tested on
synthetic tables; CatBoost + SHAP is at the end.

Vocabulary. A *checkpoint* is (cell, seed, step); step 0 is the base model, which is shown everywhere but
never enters a rank pool. A *metric column* is (metric, encoder, level, prompt_type): the paper ranks each
column separately. *Scopes* are the paper's aggregation levels: leaf (sub-class), class (concept),
category, and ``all`` (the mean over categories, a lycobench addition; the paper never averages across
categories).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ID = ["metric", "encoder", "level", "prompt_type"]  # one metric column of the paper
CKPT = ["cell", "seed", "step"]
FACTORS = ["algo", "target", "dim", "alpha", "factor", "lr", "model"]
EXTRA = "extra_"  # prefix of any other factor a run.json records (e.g. extra_multiplier)


def factor_columns(df: pd.DataFrame) -> list[str]:
    return [*FACTORS, *sorted(c for c in df.columns if c.startswith(EXTRA))]


BASE = "base"  # the cell name of the base-model rows
NATIVE = "full"  # LyCORIS's name for native fine-tuning
SCOPES = ("leaf", "class", "category", "all")
# The paper's criteria (section 8.1, Table 1) as metric columns; a criterion is the mean of its columns
# that the sweep has. Fidelity: image similarity on the three prompt types the paper plots.
CRITERIA: dict[str, list[tuple[str, str]]] = {
    "fidelity": [
        ("image_similarity", "train"),
        ("image_similarity", "trigger"),
        ("image_similarity", "alter"),
    ],
    "controllability": [("text_similarity", "alter")],
    "diversity": [("vendi", "trigger")],
    "preservation": [("style_loss", "style")],
}
# The paper measures base-model preservation on <style> prompts; a sweep that generates none falls back
# to the train prompts (the same base-model pairing: same prompt, same seed).
FALLBACKS = {("style_loss", "style"): ("style_loss", "train")}
N_BOOT = 1000
CI_LEVEL = 0.95


def resolve(columns, available: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each (metric, prompt type) as measured, or its fallback when only that was measured."""
    return [FALLBACKS[c] if c not in available and FALLBACKS.get(c) in available else c for c in columns]


def measured(scores: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(scores["metric"], scores["prompt_type"]))


def criteria_for(scores: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """CRITERIA with fallbacks applied, restricted to the criteria the sweep measured."""
    avail = measured(scores)
    out = {k: [c for c in resolve(v, avail) if c in avail] for k, v in CRITERIA.items()}
    return {k: v for k, v in out.items() if v}


def scatter_pairs_for(scores: pd.DataFrame) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """SCATTER_PAIRS with fallbacks applied (absent columns stay, so the report can say they are)."""
    avail = measured(scores)
    return [tuple(resolve(pair, avail)) for pair in SCATTER_PAIRS]


def paper_levels(df: pd.DataFrame) -> pd.DataFrame:
    """Where a metric column was measured at several levels (Vendi per set and per prompt), keep the level
    the paper reports (``lycobench.metrics.paper_level``); other rows pass unchanged."""
    try:
        from .metrics import paper_level
    except ImportError:  # a metrics module without levels: nothing to choose
        return df
    if df.empty:
        return df
    nlev = df.groupby(["metric", "prompt_type"])["level"].transform("nunique")
    keep = nlev <= 1
    multi = df.loc[~keep, ["metric", "prompt_type", "level"]].drop_duplicates()
    for m, pt, lv in multi.itertuples(index=False):
        try:
            want = paper_level(m, pt)
        except KeyError:
            want = lv
        keep |= (df["metric"] == m) & (df["prompt_type"] == pt) & (df["level"] == want)
    return df[keep]


def directions(metric_names) -> dict[str, bool | None]:
    """higher_is_better per metric from the registry; None for a metric the registry does not know."""
    from .metrics import METRICS

    return {m: (METRICS[m].higher_is_better if m in METRICS else None) for m in metric_names}


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


# --- bootstrap over seeds -----------------------------------------------------------------------------


def cluster_bootstrap(
    df: pd.DataFrame,
    by: list[str],
    value: str,
    unit: str = "seed",
    n_boot: int = N_BOOT,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean of ``value`` per ``by`` group with a percentile bootstrap CI that resamples ``unit`` (seeds):
    a seed is drawn with all its rows, because rows of one training run are not independent.

    Up to ``EXACT_UNITS`` seeds the bootstrap distribution is computed exactly: every way of drawing k
    seeds with replacement is a composition of k, weighted by its multinomial probability (10 outcomes
    for 3 seeds), so the interval has no Monte Carlo noise and costs almost nothing. Beyond that,
    ``n_boot`` resamples from a generator seeded by ``seed`` and k. Either way the result is
    deterministic. One unit gives lo = hi = the mean.
    """
    d = df[[*by, unit, value]].dropna(subset=[value])
    per = d.groupby([*by, unit], dropna=False, sort=True)[value].agg(["sum", "count"]).reset_index()
    g = per.groupby(by, dropna=False, sort=False).ngroup().to_numpy()
    j = per.groupby(by, dropna=False, sort=False).cumcount().to_numpy()
    n_groups = int(g.max()) + 1 if len(g) else 0
    width = int(j.max()) + 1 if len(j) else 0
    # dense (group x unit) matrices of per-unit sums and counts, zero-padded
    S = np.zeros((n_groups, width))
    C = np.zeros((n_groups, width))
    S[g, j], C[g, j] = per["sum"].to_numpy(float), per["count"].to_numpy(float)
    k = (C > 0).sum(1)
    mean = S.sum(1) / np.where(C.sum(1) > 0, C.sum(1), np.nan)
    lo, hi = mean.copy(), mean.copy()
    a = (1 - level) / 2
    for size in np.unique(k):
        if size < 2:
            continue
        rows = np.flatnonzero(k == size)
        # units are packed first in each row (cumcount), so columns :size hold a group's seeds
        if size <= EXACT_UNITS:
            W, p = _compositions(int(size))
        else:
            idx = np.random.default_rng([seed, int(size)]).integers(0, size, (n_boot, size))
            W, p = np.stack([np.bincount(i, minlength=size) for i in idx]).astype(float), None
        for start in range(0, len(rows), 5000):  # chunks bound memory
            r = rows[start : start + 5000]
            m = (S[r, :size] @ W.T) / (C[r, :size] @ W.T)
            lo[r], hi[r] = _quantiles(m, p, a)
    out = per.loc[j == 0, by].reset_index(drop=True)
    out["mean"], out["lo"], out["hi"], out["n_seeds"] = mean, lo, hi, k
    return out


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
    """Mean over seeds of score and raw, with bootstrap CIs, per scope x group x cell x checkpoint x column."""
    s = scores[scores["scope"].isin(scopes)].copy()
    s["seed"] = s["seed"].fillna(-1)
    by = ["scope", "group", "category", "cell", "step", "epoch", "checkpoint", *ID]
    sc = cluster_bootstrap(s, by, "score").rename(
        columns={"mean": "score", "lo": "score_lo", "hi": "score_hi"}
    )
    rw = cluster_bootstrap(s, by, "raw").rename(columns={"mean": "raw", "lo": "raw_lo", "hi": "raw_hi"})
    out = rw.merge(sc.drop(columns="n_seeds"), on=by, how="left")
    return out.sort_values(by, ignore_index=True)


# --- configurations: defaults, varied factor, the paper's factor levels -----------------------------


def _same(a, b) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and (
            b is None or (isinstance(b, float) and math.isnan(b))
        )
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _declared_default(algo: str) -> dict | None:
    """The adapter group's own settings (conf/adapter/<algo>.yaml) with the paper's attn-mlp target."""
    import yaml

    from .config import CONF_DIR

    for path in sorted((CONF_DIR / "adapter").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if cfg.get("algo") == algo and cfg.get("name", path.stem) == algo:
            return {
                "target": "attn-mlp",
                **{k: cfg.get(k) for k in ("dim", "alpha", "factor", "lr")},
            }
    return None


def _diff(a: pd.Series, b: pd.Series, extras: bool = True) -> list[str]:
    """The factors (besides algorithm and model) in which two configurations differ."""
    names = ["target", "dim", "alpha", "factor", "lr"]
    names += sorted(k for k in a.index if extras and str(k).startswith(EXTRA))
    return [f.removeprefix(EXTRA) for f in names if not _same(a.get(f), b.get(f))]


def _capacity(row) -> float:
    """A number that grows with capacity: dim, or 1/factor for LoKr (a smaller factor = a bigger block)."""
    if row["algo"] == "lokr":
        f = row.get("factor")
        return 1.0 / float(f) if f not in (None, 0) and not pd.isna(f) else np.nan
    d = row.get("dim")
    return float(d) if d is not None and not pd.isna(d) and float(d) > 0 else np.nan


def _scale(row) -> float:
    """alpha / dim, the merge ratio; LoKr at full dimension ignores alpha (scale 1)."""
    if row["algo"] == "lokr" and (row.get("dim") or 0) >= 10000:
        return 1.0
    d, a = row.get("dim"), row.get("alpha")
    if d is None or a is None or pd.isna(d) or pd.isna(a) or float(d) == 0:
        return np.nan
    return float(a) / float(d)


def config_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: its factors, its algorithm's default, the factor it varies, the paper's
    capacity and LR levels, and whether it enters the SHAP fit (section 7).

    Default of an algorithm: the configuration equal to conf/adapter/<algo>.yaml with target attn-mlp;
    failing that, the one with the most one-factor neighbours (the hub of the sweep's star design).
    Capacity level: 1 = the default's capacity, 2, 3, ... = each larger distinct capacity of that algorithm
    in the sweep; native fine-tuning = the largest level + 1 (the paper's 1 / 2 / 3). LR level: 2 = the
    default lr, 1 / 3 = the next lower / higher distinct lr of that algorithm (the paper's 1 / 2 / 3).
    Excluded from the SHAP fit, as in the paper (1003, 1013, 1023): a capacity below the default's, or an
    alpha/dim that differs from the default's (the capacity feature cannot express it).
    """
    cfgs = runs.drop_duplicates("cell").set_index("cell")[factor_columns(runs)].sort_index()
    cfgs = cfgs.assign(
        is_default=False, default=None, varied="", capacity_level=np.nan, lr_level=np.nan, in_shap_fit=True
    )
    cfgs["exclude_reason"] = ""
    for algo, grp in cfgs.groupby("algo"):
        default = _find_default(algo, grp)
        cfgs.loc[grp.index, "default"] = default
        cfgs.loc[default, "is_default"] = True
        dflt = cfgs.loc[default]
        for cell in grp.index:
            if cell != default:
                cfgs.loc[cell, "varied"] = ",".join(_diff(cfgs.loc[cell], dflt)) or "none"
        lrs = sorted({float(x) for x in grp["lr"].dropna()})
        for cell in grp.index:
            lr = cfgs.loc[cell, "lr"]
            if not pd.isna(lr):
                cfgs.loc[cell, "lr_level"] = 2 + lrs.index(float(lr)) - lrs.index(float(dflt["lr"]))
        if algo == NATIVE:
            continue
        caps = grp.apply(_capacity, axis=1)
        levels = sorted(set(caps.dropna()))
        c0 = _capacity(dflt)
        for cell in grp.index:
            c = caps[cell]
            if pd.isna(c) or pd.isna(c0):
                continue
            cfgs.loc[cell, "capacity_level"] = 1 + levels.index(c) - levels.index(c0)
            if c < c0:
                cfgs.loc[cell, ["in_shap_fit", "exclude_reason"]] = (False, "capacity below the default")
            elif not _same(_scale(cfgs.loc[cell]), _scale(dflt)):
                cfgs.loc[cell, ["in_shap_fit", "exclude_reason"]] = (
                    False,
                    "alpha/dim differs from the default",
                )
    top = cfgs["capacity_level"].max()
    cfgs.loc[cfgs["algo"] == NATIVE, "capacity_level"] = (1 if pd.isna(top) else top) + 1
    cfgs["capacity_level"] = cfgs["capacity_level"].astype(float)
    cfgs["lr_level"] = cfgs["lr_level"].astype(float)
    cfgs["in_shap_fit"] = cfgs["in_shap_fit"].astype(bool)
    return cfgs.reset_index()


def _find_default(algo: str, grp: pd.DataFrame) -> str:
    declared = _declared_default(algo)
    if declared is not None:
        hits = [c for c in grp.index if not _diff(grp.loc[c], pd.Series(declared), extras=False)]
        if hits:
            return sorted(hits, key=lambda c: (len(c), c))[0]
    neighbours = {c: sum(len(_diff(grp.loc[c], grp.loc[o])) == 1 for o in grp.index) for c in grp.index}
    return sorted(grp.index, key=lambda c: (-neighbours[c], grp.loc[c, "target"] != "attn-mlp", len(c), c))[0]


# --- paired comparisons -------------------------------------------------------------------------------


def comparison_pairs(configs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(a, b, kind): every configuration against its algorithm's default (one factor varied), and every
    pair of algorithm defaults."""
    pairs = [(r.cell, r.default, f"{r.varied} vs default") for r in configs.itertuples() if not r.is_default]
    defaults = sorted(configs.loc[configs["is_default"], "cell"])
    pairs += [(a, b, "defaults") for i, a in enumerate(defaults) for b in defaults[i + 1 :]]
    return pairs


def paired_comparisons(
    leaf_scores: pd.DataFrame, pairs: list[tuple[str, str, str]], n_boot: int = N_BOOT
) -> pd.DataFrame:
    """a vs b on the same leaves, prompts and training seeds, per metric column, per epoch and pooled.

    Units are (seed, leaf[, epoch]); differences are in normalised score, so a positive difference means
    a is better whatever the metric's direction. Effect sizes: mean difference with a bootstrap CI over
    seeds, Cohen's d_z (mean / sd of the paired differences) and the win rate of a (ties count half).
    ``raw_diff`` is the mean raw difference a - b, in the metric's own unit and sign.
    """
    s = leaf_scores[~leaf_scores["is_base"] & leaf_scores["score"].notna()]
    cols = ["seed", "epoch", "leaf", *ID, "score", "value"]
    frames = []
    for a, b, kind in pairs:
        m = s.loc[s["cell"] == a, cols].merge(
            s.loc[s["cell"] == b, cols], on=["seed", "epoch", "leaf", *ID], suffixes=("_a", "_b")
        )
        if m.empty:
            continue
        m["d"] = m["score_a"] - m["score_b"]
        m["raw_d"] = m["value_a"] - m["value_b"]
        m["win"] = (m["d"] > 0) + 0.5 * (m["d"] == 0)
        frames.append(m.assign(a=a, b=b, kind=kind))
        frames.append(m.assign(a=a, b=b, kind=kind, epoch=np.nan))  # pooled over checkpoints
    cols_out = ["a", "b", "kind", "epoch", *ID, "n_units", "n_seeds", "mean_diff", "ci_lo", "ci_hi", "d_z"]
    if not frames:
        return pd.DataFrame(columns=[*cols_out, "win_rate", "raw_diff"])
    d = pd.concat(frames, ignore_index=True)
    by = ["a", "b", "kind", "epoch", *ID]
    ci = cluster_bootstrap(d, by, "d", n_boot=n_boot)
    st = (
        d.groupby(by, dropna=False)
        .agg(
            n_units=("d", "size"),
            sd=("d", "std"),
            win_rate=("win", "mean"),
            raw_diff=("raw_d", "mean"),
        )
        .reset_index()
    )
    out = ci.rename(columns={"mean": "mean_diff", "lo": "ci_lo", "hi": "ci_hi"}).merge(st, on=by)
    out["d_z"] = (out["mean_diff"] / out["sd"]).where(out["sd"] > 0)
    return out[[*cols_out, "win_rate", "raw_diff"]].sort_values(
        ["kind", "a", "b", "metric", "prompt_type", "epoch"], ignore_index=True, na_position="first"
    )


# --- criteria, Table 1, best checkpoints, overfitting ---------------------------------------------------


def criteria_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Category- and all-scope criterion scores per checkpoint: the mean of the criterion's metric columns
    present (at the paper's level, averaged over encoders). Rows: scope, group, cell, seed, step, epoch, criterion, score."""
    s = scores[scores["scope"].isin(["category", "all"])]
    frames = []
    for crit, cols in criteria_for(s).items():
        mask = np.zeros(len(s), bool)
        for metric, ptype in cols:
            mask |= ((s["metric"] == metric) & (s["prompt_type"] == ptype)).to_numpy()
        part = paper_levels(s[mask])
        if part.empty:
            continue
        keys = ["scope", "group", "cell", "seed", "step", "epoch", "checkpoint", "is_base"]
        g = part.groupby(keys, dropna=False).agg(score=("score", "mean"), raw=("raw", "mean")).reset_index()
        frames.append(g.assign(criterion=crit))
    if not frames:
        return pd.DataFrame(columns=["scope", "group", "cell", "seed", "step", "epoch", "criterion", "score"])
    return pd.concat(frames, ignore_index=True)


def table1_configs(configs: pd.DataFrame) -> list[str]:
    """The paper's Table 1 columns: each algorithm's default, plus native fine-tuning at its other lrs."""
    keep = configs["is_default"] | ((configs["algo"] == NATIVE) & (configs["varied"] == "lr"))
    return sorted(configs.loc[keep, "cell"])


def table1(crit: pd.DataFrame, cells: list[str]) -> pd.DataFrame:
    """Rank of each configuration per criterion (1 = worst, k = best, as the paper's Table 1) from the mean
    all-scope criterion score over seeds and checkpoints, with a bootstrap CI over seeds."""
    c = crit[(crit["scope"] == "all") & crit["cell"].isin(cells)]
    if c.empty:
        return pd.DataFrame(columns=["criterion", "cell", "score", "lo", "hi", "n_seeds", "rank"])
    t = cluster_bootstrap(c, ["criterion", "cell"], "score").rename(columns={"mean": "score"})
    t["rank"] = t.groupby("criterion")["score"].rank(method="average").astype(float)
    return t.sort_values(["criterion", "rank"], ignore_index=True)


def best_checkpoints(crit: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and scope group: the checkpoint with the best balanced score (arithmetic mean of
    the criteria present, seed means; the paper's unused ``select_best_step``), and where each criterion
    peaks."""
    c = crit[~crit["is_base"]]
    if c.empty:
        return pd.DataFrame(columns=["group", "cell", "best_epoch", "balanced"])
    m = c.groupby(["group", "cell", "epoch", "criterion"])["score"].mean().unstack("criterion")
    crits = [k for k in CRITERIA if k in m.columns]
    m["balanced"] = m[crits].mean(axis=1)
    rows = []
    for (group, cell), g in m.groupby(level=["group", "cell"]):
        g = g.droplevel(["group", "cell"])
        row = {
            "group": group,
            "cell": cell,
            "best_epoch": g["balanced"].idxmax(),
            "balanced": g["balanced"].max(),
        }
        for k in crits:
            row[f"best_{k}_epoch"] = g[k].idxmax() if g[k].notna().any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


OVERFIT_TOL = 0.05  # on the normalised [0, 1] scale: smaller moves between checkpoints are noise here


def overfitting_alarms(crit: pd.DataFrame, tol: float = OVERFIT_TOL) -> pd.DataFrame:
    """Consecutive checkpoints of a configuration where fidelity rises while controllability, diversity or
    preservation falls, each by more than ``tol`` (seed means, per category and overall)."""
    c = crit[~crit["is_base"]]
    cols = ["group", "cell", "from_epoch", "to_epoch", "fidelity_change", "falling"]
    if c.empty or "fidelity" not in set(c["criterion"]):
        return pd.DataFrame(columns=cols)
    m = c.groupby(["group", "cell", "epoch", "criterion"])["score"].mean().unstack("criterion")
    others = [k for k in ("controllability", "diversity", "preservation") if k in m.columns]
    rows = []
    for (group, cell), g in m.groupby(level=["group", "cell"]):
        g = g.droplevel(["group", "cell"]).sort_index()
        for e0, e1 in zip(g.index[:-1], g.index[1:]):
            df_ = g.loc[e1, "fidelity"] - g.loc[e0, "fidelity"]
            falls = {k: g.loc[e1, k] - g.loc[e0, k] for k in others}
            falling = {k: v for k, v in falls.items() if v < -tol}
            if df_ > tol and falling:
                text = ", ".join(f"{k} {v:+.2f}" for k, v in falling.items())
                rows.append(
                    {
                        "group": group,
                        "cell": cell,
                        "from_epoch": e0,
                        "to_epoch": e1,
                        "fidelity_change": df_,
                        "falling": text,
                    }
                )
    return pd.DataFrame(rows, columns=cols)


LEARNED = 0.8  # a checkpoint has learned a leaf when the oracle detects it in >= 80% of its trigger images


def concept_learning(raw: pd.DataFrame, learned: float = LEARNED) -> pd.DataFrame:
    """Did the fine-tunes learn the concepts? Per leaf, from the oracle's ``concept_detection`` on trigger
    prompts (world sweeps only; empty otherwise): over every trained checkpoint the median and best rate
    and the share at or above ``learned``, and the median at each run's last checkpoint; ``images`` is the
    number of trigger images behind one rate (few images make a single rate noisy). Fidelity
    rankings among checkpoints that never learned a leaf compare failures; the report says so."""
    cols = ["leaf", "checkpoints", "images", "median", "best", "best_cell", "best_seed", "best_epoch",
            "share_learned", "median_last"]  # fmt: skip
    d = raw[(raw["metric"] == "concept_detection") & (raw["prompt_type"] == "trigger") & ~raw["is_base"]]
    d = d.dropna(subset=["value"])
    if d.empty:
        return pd.DataFrame(columns=cols)
    last = d["step"] == d.groupby(["cell", "seed"])["step"].transform("max")
    rows = []
    for leaf, g in d.groupby("leaf"):
        top = g.loc[g["value"].idxmax()]
        where = (top["cell"], top["seed"], top["epoch"]) if top["value"] > 0 else (None, None, np.nan)
        rows.append({
            "leaf": leaf, "checkpoints": len(g), "images": g["n"].median() if "n" in g else np.nan,
            "median": g["value"].median(), "best": top["value"],
            "best_cell": where[0], "best_seed": where[1], "best_epoch": where[2],  # none when nothing was detected
            "share_learned": float((g["value"] >= learned).mean()), "median_last": g.loc[last[g.index], "value"].median(),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def learning_warning(learning: pd.DataFrame, learned: float = LEARNED) -> str | None:
    """One sentence when some leaf was learned by no checkpoint, or by fewer than half of them."""
    if learning.empty:
        return None
    never = learning.loc[learning["share_learned"] == 0, "leaf"].tolist()
    rarely = learning.loc[
        (learning["share_learned"] > 0) & (learning["share_learned"] < 0.5), "leaf"
    ].tolist()
    if not never and not rarely:
        return None
    parts = []
    if never:
        parts.append(f"no checkpoint learned {', '.join(never)}")
    if rarely:
        parts.append(f"fewer than half of the checkpoints learned {', '.join(rarely)}")
    return (
        f"{'; '.join(parts)} (learned: the oracle detects the concept in >= {learned:.0%} of the trigger "
        "images). Fidelity scores for those leaves rank checkpoints that mostly failed to learn; a larger "
        "training budget (train.exposures_per_epoch, train.epochs) teaches more."
    )


# The paper's scatter panels (section 6, item 4) as (x, y) metric columns (metric, prompt type).
SCATTER_PAIRS = [
    (("image_similarity", "alter"), ("text_similarity", "alter")),
    (("squared_centroid_distance", "trigger"), ("vendi", "trigger")),
    (("image_similarity", "train"), ("style_loss", "style")),
]


def point_estimates(scores: pd.DataFrame, category: str, metric: str, prompt_type: str) -> pd.DataFrame:
    """Per (cell, epoch): the normalised score averaged over seeds and classes of ``category`` and its
    error bar std / sqrt(n) over seeds x classes (the paper's scatter points). Base rows included."""
    s = scores[
        (scores["scope"] == "class")
        & (scores["category"] == category)
        & (scores["metric"] == metric)
        & (scores["prompt_type"] == prompt_type)
        & scores["score"].notna()
    ]
    s = paper_levels(s)
    if s.empty:
        return pd.DataFrame(columns=["cell", "epoch", "mean", "err", "n"])
    # several encoders of one metric: average them first, per class and seed
    s = s.groupby(["cell", "seed", "epoch", "group"], dropna=False)["score"].mean().reset_index()
    g = s.groupby(["cell", "epoch"])["score"].agg(["mean", "std", "count"]).reset_index()
    g["err"] = (g["std"] / np.sqrt(g["count"])).fillna(0.0)
    return g.rename(columns={"count": "n"})[["cell", "epoch", "mean", "err", "n"]]


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points not dominated when both coordinates are to be maximised (normalised scores: 1 = best)."""
    pts = np.column_stack([x, y])
    keep = np.ones(len(pts), bool)
    for i, p in enumerate(pts):
        if np.isnan(p).any():
            keep[i] = False
            continue
        others = np.delete(pts, i, axis=0)
        others = others[~np.isnan(others).any(axis=1)]
        if ((others >= p).all(axis=1) & (others > p).any(axis=1)).any():
            keep[i] = False
    return keep


def pareto_table(points: dict) -> pd.DataFrame:
    """Every (configuration, epoch) seed-x-class mean on each scatter pair, with its membership of the
    pair's Pareto front (both axes maximised). ``points[(x, y)]`` = (x frame, y frame) of
    ``point_estimates``; the base model is left out of the front."""
    frames = []
    for (xcol, ycol), (px, py) in points.items():
        if px.empty or py.empty:
            continue
        m = px.merge(py, on=["cell", "epoch"], suffixes=("_x", "_y"))
        m = m[m["cell"] != BASE].reset_index(drop=True)
        if m.empty:
            continue
        m["front"] = pareto_mask(m["mean_x"].to_numpy(), m["mean_y"].to_numpy())
        frames.append(m.assign(x=f"{xcol[0]}({xcol[1]})", y=f"{ycol[0]}({ycol[1]})"))
    if not frames:
        return pd.DataFrame()
    cols = ["x", "y", "cell", "epoch", "mean_x", "err_x", "mean_y", "err_y", "front"]
    return pd.concat(frames, ignore_index=True)[cols]


def correlations(leaf_scores: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of the normalised scores of every metric column, over (checkpoint, leaf) rows,
    no aggregation (the paper's App. E)."""
    s = leaf_scores[~leaf_scores["is_base"] & leaf_scores["score"].notna()]
    if s.empty:
        return pd.DataFrame()
    s = s.assign(column=column_label(s))
    wide = s.pivot_table(index=["cell", "seed", "step", "leaf"], columns="column", values="score")
    wide = wide.loc[:, wide.std() > 0]
    return wide.corr(method="pearson")


def column_label(df: pd.DataFrame) -> pd.Series:
    """A readable name for a metric column: metric(prompt type), with encoder / level when they vary."""
    label = df["metric"] + "(" + df["prompt_type"] + ")"
    for col in ("encoder", "level"):
        per = df.groupby(["metric", "prompt_type"])[col].transform("nunique")
        label = label.where(per <= 1, label + "[" + df[col].astype(str) + "]")
    return label


# --- CatBoost + SHAP ----------------------------------------------------------------------------------

FEATURES = ["Algorithm", "Trained Layers", "Epoch", "Capacity", "LR level"]
CAT_FEATURES = ["Algorithm", "Trained Layers"]  # the paper's Algo / Preset
CATBOOST_PARAMS = dict(
    iterations=300, learning_rate=0.1, random_seed=123, nan_mode="Min", allow_writing_files=False
)
R2_RELIABLE = 0.3  # a cross-validated R^2 below this: the model explains too little to attribute anything
MIN_ROWS = 6


@dataclass
class ShapResult:
    category: str
    column: dict  # metric, encoder, level, prompt_type
    X: pd.DataFrame | None = None  # the features as fitted (native rows: Capacity NaN after folding)
    shap: np.ndarray | None = None  # rows x FEATURES
    y: np.ndarray | None = None
    pred: np.ndarray | None = None  # the model's predictions on the fit set
    expected: float = float("nan")  # the SHAP base value: predictions = expected + row sums of shap
    r2_train: float = float("nan")
    r2_cv: float = float("nan")
    n_folds: int = 0
    note: str = ""  # why no fit, or why unreliable
    n: int = 0  # checkpoints in the fit set
    rows: list = field(default_factory=list)  # (cell, seed, step) per row

    @property
    def reliable(self) -> bool:
        return self.shap is not None and not math.isnan(self.r2_cv) and self.r2_cv >= R2_RELIABLE


# The paper's SHAP targets (section 7): its six plotted metrics, and for style concepts style similarity
# (style_distance) too. One CatBoost model per target column and category; every other column is still
# ranked, tabulated and plotted.
SHAP_TARGETS = [
    ("image_similarity", "train"),
    ("image_similarity", "trigger"),
    ("image_similarity", "alter"),
    ("squared_centroid_distance", "trigger"),
    ("text_similarity", "alter"),
    ("vendi", "trigger"),
    ("style_loss", "style"),
    ("style_distance", "train"),
    ("style_distance", "trigger"),
    ("style_distance", "alter"),
]


# Metric curves over checkpoints: the SHAP targets plus, where measured, the oracle's concept detection,
# attribute accuracy and base drift (one panel each; every column's numbers are in summary_ci.csv).
CURVE_EXTRAS = [
    ("concept_detection", "trigger"),
    ("concept_detection", "alter"),
    ("attribute_accuracy", "alter"),
    ("base_drift", "agnostic"),
]


def curve_columns(scores: pd.DataFrame) -> set[tuple[str, str]]:
    return shap_targets(scores) | (set(CURVE_EXTRAS) & measured(scores))


def shap_targets(scores: pd.DataFrame) -> set[tuple[str, str]]:
    """SHAP_TARGETS with fallbacks applied, restricted to what the sweep measured."""
    avail = measured(scores)
    return {c for c in resolve(SHAP_TARGETS, avail) if c in avail}


def shap_rows(scores: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """Category-scope scores of the SHAP targets for the checkpoints in the SHAP fit set, with the paper's
    five features."""
    fit = configs[configs["in_shap_fit"]].set_index("cell")
    s = scores[(scores["scope"] == "category") & ~scores["is_base"] & scores["cell"].isin(fit.index)]
    targets = shap_targets(scores)
    is_target = np.array([c in targets for c in zip(s["metric"], s["prompt_type"])], dtype=bool)
    s = s[s["score"].notna().to_numpy() & is_target].copy()
    s["Algorithm"] = s["cell"].map(fit["algo"]).astype(str)
    s["Trained Layers"] = s["cell"].map(fit["target"]).astype(str)
    s["Epoch"] = s["epoch"].astype(float)
    s["Capacity"] = s["cell"].map(fit["capacity_level"]).astype(float)
    s["LR level"] = s["cell"].map(fit["lr_level"]).astype(float)
    return s


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return float("nan") if ss == 0 else 1 - float(((y - pred) ** 2).sum()) / ss


def seed_folds(seeds: np.ndarray, max_folds: int = 5) -> list[np.ndarray]:
    """GroupKFold over training seeds: every seed's rows are held out together; leave-one-seed-out up to
    ``max_folds`` seeds, otherwise seeds dealt round-robin (sorted) into ``max_folds`` folds."""
    uniq = np.unique(seeds)
    k = min(len(uniq), max_folds)
    fold_of = {s: i % k for i, s in enumerate(uniq)}
    f = np.array([fold_of[s] for s in seeds])
    return [np.flatnonzero(f == i) for i in range(k)] if k >= 2 else []


def fit_shap(rows: pd.DataFrame, category: str, column: dict) -> ShapResult:
    """One CatBoostRegressor per (metric column, category) on the five features, its SHAP values, its
    training R^2 and its R^2 cross-validated over seeds (GroupKFold). SHAP values come from CatBoost's own
    exact TreeSHAP (``get_feature_importance(type='ShapValues')``), which is what ``shap.TreeExplainer``
    calls for CatBoost models; importing shap costs tens of seconds and adds nothing here.
    Native fine-tuning: its Capacity SHAP value is added to its Algorithm SHAP value and set to 0."""
    res = ShapResult(category, column, n=len(rows))
    if len(rows) < MIN_ROWS:
        res.note = f"only {len(rows)} checkpoint(s) in the fit set (need {MIN_ROWS})"
        return res
    y = rows["score"].to_numpy(float)
    if np.ptp(y) == 0:
        res.note = "the score is constant over the fit set"
        return res
    X = rows[FEATURES].reset_index(drop=True)
    from catboost import CatBoostError, CatBoostRegressor, Pool

    def model():
        return CatBoostRegressor(**CATBOOST_PARAMS, thread_count=1, verbose=False)

    try:
        m = model()
        m.fit(X, y, cat_features=CAT_FEATURES)
        full = m.get_feature_importance(Pool(X, cat_features=CAT_FEATURES), type="ShapValues")
        phi, res.expected = full[:, :-1], float(full[0, -1])
        res.pred = m.predict(X)
        res.r2_train = _r2(y, res.pred)
        folds = seed_folds(rows["seed"].to_numpy())
        if folds:
            pred = np.full(len(y), np.nan)
            for test in folds:
                train = np.setdiff1d(np.arange(len(y)), test)
                if np.ptp(y[train]) == 0:
                    pred[test] = y[train].mean()
                    continue
                mf = model()
                mf.fit(X.iloc[train], y[train], cat_features=CAT_FEATURES)
                pred[test] = mf.predict(X.iloc[test])
            res.r2_cv, res.n_folds = _r2(y, pred), len(folds)
    except CatBoostError as e:
        res.note = f"CatBoost could not fit: {str(e).splitlines()[0]}"
        return res
    native = (X["Algorithm"] == NATIVE).to_numpy()
    a, c = FEATURES.index("Algorithm"), FEATURES.index("Capacity")
    phi[native, a] += phi[native, c]
    phi[native, c] = 0.0
    X.loc[native, "Capacity"] = np.nan
    res.X, res.shap, res.y = X, phi, y
    res.rows = list(rows[["cell", "seed", "step"]].itertuples(index=False, name=None))
    if not res.n_folds:
        res.note = "one seed only: no cross-validated R^2, attributions unverified"
    elif math.isnan(res.r2_cv) or res.r2_cv < R2_RELIABLE:
        res.note = f"cross-validated R^2 {res.r2_cv:.2f} < {R2_RELIABLE}: attributions unreliable"
    return res


def shap_table(results: list[ShapResult]) -> pd.DataFrame:
    """Fit quality and mean |SHAP| per feature of every model, one row per (category, metric column)."""
    rows = []
    for r in results:
        row = {
            "category": r.category,
            **{k: r.column[k] for k in ID},
            "n_rows": r.n,
        }
        row.update(r2_train=r.r2_train, r2_cv=r.r2_cv, n_folds=r.n_folds, reliable=r.reliable, note=r.note)
        for i, f in enumerate(FEATURES):
            row[f"mean_abs_shap_{f}"] = float(np.abs(r.shap[:, i]).mean()) if r.shap is not None else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def category_of_leaves(concept_specs: list[str], base: Path | None = None) -> dict[str, str]:
    """concept name -> category from the concept definitions (concept.yaml in a folder, or <name>.yaml)."""
    import yaml

    from .config import CONCEPTS_DIR

    out = {}
    for spec in concept_specs:
        p = Path(spec).expanduser()
        candidates = [p / "concept.yaml", p if p.suffix == ".yaml" else p.with_suffix(".yaml")]
        candidates += [CONCEPTS_DIR / spec / "concept.yaml", CONCEPTS_DIR / f"{spec}.yaml"]
        if base is not None:
            candidates.append(base / spec / "concept.yaml")
        for c in candidates:
            if c.is_file():
                meta = yaml.safe_load(c.read_text(encoding="utf-8")) or {}
                if meta.get("name") and meta.get("category"):
                    out[str(meta["name"])] = str(meta["category"])
                    break
    return out
