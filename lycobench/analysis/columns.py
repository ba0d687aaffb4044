"""The analysis's vocabulary: metric columns, factors, the paper's criteria and scatter pairs, metric
directions, and the category of each concept."""

from __future__ import annotations

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
        from ..metrics import paper_level
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


def drop_repeated_levels(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop a level of a metric column that repeats another level of it on every row: Vendi is stored per
    set and per prompt, and on a one-prompt file (<trigger>) the two are the same number. As two metric
    columns they would be ranked, modelled, drawn and tabulated twice. The paper's level is kept
    (``lycobench.metrics.paper_level``). Returns (rows kept, one note per column merged)."""
    col = ["metric", "encoder", "prompt_type"]
    if raw.empty or not (raw.groupby(col)["level"].transform("nunique") > 1).any():
        return raw, []
    try:
        from ..metrics import paper_level
    except ImportError:
        return raw, []
    at = ["cell", "step", "leaf"]
    drop, notes = [], []
    multi = raw[raw.groupby(col)["level"].transform("nunique") > 1]
    for (metric, encoder, ptype), g in multi.groupby(col, sort=True):
        levels = sorted(g["level"].unique())
        try:
            want = paper_level(metric, ptype)
        except KeyError:
            want = levels[0]
        want = want if want in levels else levels[0]
        keyed = g.assign(_seed=g["seed"].astype("Int64").fillna(-1))
        ref = keyed[keyed["level"] == want][[*at, "_seed", "value"]]
        for level in levels:
            if level == want:
                continue
            other = keyed[keyed["level"] == level]
            m = other[[*at, "_seed", "value"]].merge(ref, on=[*at, "_seed"], suffixes=("", "_ref"))
            same = len(m) == len(other) == len(ref) and np.allclose(
                m["value"], m["value_ref"], rtol=1e-9, atol=1e-12, equal_nan=True
            )
            if same:
                drop.extend(other.index)
                notes.append(
                    f"{metric}({ptype}) [{encoder}]: the {level} level equals the {want} level on every "
                    f"checkpoint and leaf (one prompt per file): shown once, as {want}"
                )
    return raw.drop(index=drop), notes


def directions(metric_names) -> dict[str, bool | None]:
    """higher_is_better per metric from the registry; None for a metric the registry does not know."""
    from ..metrics import METRICS

    return {m: (METRICS[m].higher_is_better if m in METRICS else None) for m in metric_names}


# The paper's scatter panels (section 6, item 4) as (x, y) metric columns (metric, prompt type).
SCATTER_PAIRS = [
    (("image_similarity", "alter"), ("text_similarity", "alter")),
    (("squared_centroid_distance", "trigger"), ("vendi", "trigger")),
    (("image_similarity", "train"), ("style_loss", "style")),
]


def column_label(df: pd.DataFrame) -> pd.Series:
    """A readable name for a metric column: metric(prompt type), with encoder / level when they vary."""
    label = df["metric"] + "(" + df["prompt_type"] + ")"
    for col in ("encoder", "level"):
        per = df.groupby(["metric", "prompt_type"])[col].transform("nunique")
        label = label.where(per <= 1, label + "[" + df[col].astype(str) + "]")
    return label


def category_of_leaves(concept_specs: list[str], base: Path | None = None) -> dict[str, str]:
    """concept name -> category from the concept definitions (concept.yaml in a folder, or <name>.yaml)."""
    import yaml

    from ..config import CONCEPTS_DIR

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
