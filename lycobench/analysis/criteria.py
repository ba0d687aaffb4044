"""The paper's criteria per checkpoint, Table 1, the best checkpoints, overfitting alarms, and whether the
concepts were learned (oracle concept detection)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import CRITERIA, NATIVE, criteria_for, paper_levels
from .scores import seed_interval

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
    """Rank of each configuration per criterion (1 = best; the paper's Table 1 counts the other way, k =
    best) from the mean all-scope criterion score over seeds and checkpoints, with a t-interval over
    seeds; sorted by criterion, best first."""
    c = crit[(crit["scope"] == "all") & crit["cell"].isin(cells)]
    if c.empty:
        return pd.DataFrame(columns=["criterion", "cell", "score", "lo", "hi", "n_seeds", "rank"])
    t = seed_interval(c, ["criterion", "cell"], "score", bounds=(0.0, 1.0)).rename(columns={"mean": "score"})
    t["rank"] = t.groupby("criterion")["score"].rank(method="average", ascending=False).astype(float)
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
        # a pool of one checkpoint has no rank (score NaN): no best among one, unless it is the only one
        ranked = g["balanced"].notna().any()
        only = g.index[0] if len(g) == 1 else np.nan
        row = {
            "group": group,
            "cell": cell,
            "best_epoch": g["balanced"].idxmax() if ranked else only,
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
FADE = 0.1  # a median rate this far below its peak at the last checkpoint is a fade, not rate noise


def _trigger_detection(raw: pd.DataFrame) -> pd.DataFrame:
    """The oracle's concept detection on trigger prompts, fine-tuned checkpoints only."""
    d = raw[(raw["metric"] == "concept_detection") & (raw["prompt_type"] == "trigger") & ~raw["is_base"]]
    return d.dropna(subset=["value"])


def _at_last_step(d: pd.DataFrame) -> pd.Series:
    """Rows of each run's last checkpoint."""
    return d["step"] == d.groupby(["cell", "seed"])["step"].transform("max")


def concept_learning(raw: pd.DataFrame, learned: float = LEARNED) -> pd.DataFrame:
    """Did the fine-tunes learn the concepts? Per leaf, from the oracle's ``concept_detection`` on trigger
    prompts (world sweeps only; empty otherwise): over every trained checkpoint the median and best rate
    and the share at or above ``learned``, and the median at each run's last checkpoint; ``images`` is the
    number of trigger images behind one rate (few images make a single rate noisy); ``peak_epoch`` is the
    epoch whose median over runs is highest (``median_peak``), which tells a leaf still being learned at the
    end from one that fades with more training. Fidelity
    rankings among checkpoints that never learned a leaf compare failures; the report says so."""
    cols = ["leaf", "checkpoints", "images", "median", "best", "best_cell", "best_seed", "best_epoch",
            "best_ties", "share_learned", "median_last", "peak_epoch", "median_peak"]  # fmt: skip
    d = _trigger_detection(raw)
    if d.empty:
        return pd.DataFrame(columns=cols)
    last = _at_last_step(d)
    rows = []
    for leaf, g in d.groupby("leaf"):
        top = g.loc[g["value"].idxmax()]
        where = (top["cell"], top["seed"], top["epoch"]) if top["value"] > 0 else (None, None, np.nan)
        by_epoch = g.groupby("epoch")["value"].median()
        rows.append({
            "leaf": leaf, "checkpoints": len(g), "images": g["n"].median() if "n" in g else np.nan,
            "median": g["value"].median(), "best": top["value"],
            "best_cell": where[0], "best_seed": where[1], "best_epoch": where[2],  # none when nothing was detected
            "best_ties": int((g["value"] == top["value"]).sum()) if top["value"] > 0 else 0,  # others as good
            "share_learned": float((g["value"] >= learned).mean()), "median_last": g.loc[last[g.index], "value"].median(),
            "peak_epoch": by_epoch.idxmax(), "median_peak": by_epoch.max(),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def learned_at_last(raw: pd.DataFrame, defaults: list[str], learned: float = LEARNED) -> pd.DataFrame:
    """Per default configuration (the paper's default of each algorithm) and seed: which leaves its last
    checkpoint learned (oracle detection >= ``learned`` on the trigger prompts), and the rates it missed."""
    cols = ["cell", "seed", "step", "learned", "leaves", "all_learned", "missed"]
    d = _trigger_detection(raw)
    d = d[d["cell"].isin(defaults)]
    if d.empty:
        return pd.DataFrame(columns=cols)
    d = d[_at_last_step(d)]
    rows = []
    for (cell, seed), g in d.groupby(["cell", "seed"]):
        miss = g[g["value"] < learned].sort_values("leaf")
        rows.append({
            "cell": cell, "seed": seed, "step": int(g["step"].iloc[0]), "learned": int(len(g) - len(miss)),
            "leaves": int(len(g)), "all_learned": miss.empty,
            "missed": ", ".join(f"{r.leaf} {r.value:.2f}" for r in miss.itertuples()),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def learned_at_last_sentence(t: pd.DataFrame) -> str | None:
    """One sentence per default configuration: did its last checkpoint learn every concept, seed by seed?"""
    if t.empty:
        return None
    out = []
    for cell, g in t.groupby("cell", sort=False):
        ok = g.loc[g["all_learned"], "seed"].tolist()
        bad = [f"seed {r.seed} missed {r.missed}" for r in g.itertuples() if not r.all_learned]
        seeds = "seed" + ("s " if len(ok) > 1 else " ") + ", ".join(map(str, ok)) if ok else ""
        if not bad:
            out.append(f"{cell}: every leaf, {seeds}")
        else:
            out.append(f"{cell}: " + (f"every leaf for {seeds}; " if ok else "") + "; ".join(bad))
    return (
        "At the last checkpoint, the default configuration of each algorithm learned: " + ". ".join(out) + "."
    )


def leaves_without_oracle(raw: pd.DataFrame) -> list[str]:
    """Leaves the oracle read (it has rows for them) but has no class for: a user's concept, which the world
    oracle cannot detect; evaluate leaves out its detection instead of storing 0."""
    oracle = raw[raw["encoder"].astype(str).str.endswith("oracle")]
    detected = set(oracle.loc[oracle["metric"] == "concept_detection", "leaf"])
    return sorted(set(oracle["leaf"]) - detected)


def no_oracle_note(leaves: list[str] | None) -> str | None:
    """The report's sentence for ``leaves_without_oracle``."""
    if not leaves:
        return None
    return (
        f"No oracle for this concept: {', '.join(leaves)}. The world oracle knows only the embedded world's "
        "concepts, so concept detection and leakage are left out for it (not 0); image similarity and the "
        "other encoder metrics measure its fidelity."
    )


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
    weak = learning[learning["leaf"].isin(never + rarely)]
    # a leaf whose median rate fell by the last checkpoint is not short of training: more of it fades it further
    fading = weak[weak["median_peak"] - weak["median_last"] > FADE]
    rising = weak.drop(fading.index)["leaf"].tolist()
    advice = []
    if rising:
        advice.append(
            f"{', '.join(rising)}: the median rate is highest at the last checkpoint, so a larger training "
            "budget (train.exposures_per_epoch, train.epochs) may teach more"
        )
    if not fading.empty:
        peaks = ", ".join(
            f"{r.leaf} {r.median_peak:.2f} at epoch {r.peak_epoch:g}, {r.median_last:.2f} at the last"
            for r in fading.itertuples()
        )
        advice.append(
            f"fading with more training (median rate {peaks}): a larger budget does not help them; an earlier "
            "checkpoint or a lower learning rate may"
        )
    return (
        f"{'; '.join(parts)} (learned: the oracle detects the concept in >= {learned:.0%} of the trigger "
        "images). Fidelity scores for those leaves rank checkpoints that mostly failed to learn. "
        + "; ".join(advice)
        + "."
    )
