"""What was run: one row per configuration (its default, the factor it varies, the paper's factor levels),
and paired comparisons of a configuration with its default."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .columns import EXTRA, ID, NATIVE, factor_columns
from .scores import seed_interval

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

    from ..config import CONF_DIR

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


def paired_comparisons(leaf_scores: pd.DataFrame, pairs: list[tuple[str, str, str]]) -> pd.DataFrame:
    """a vs b on the same leaves, prompts and training seeds, per metric column, per epoch and pooled.

    Units are (seed, leaf[, epoch]); differences are in normalised score, so a positive difference means
    a is better whatever the metric's direction. Effect sizes: mean difference with a t-interval over
    seeds (the seeds' mean differences), Cohen's d_z (mean / sd of the paired differences) and the win rate of a (ties count half).
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
    ci = seed_interval(d, by, "d", bounds=(-1.0, 1.0))
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
