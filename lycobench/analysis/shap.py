"""CatBoost + SHAP: the paper's five features explaining each criterion column, cross-validated by seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .columns import ID, NATIVE, measured, paper_levels, resolve
from .null_check import NULL, attribution, importance, planted_null, refit_importances

# --- CatBoost + SHAP ----------------------------------------------------------------------------------

FEATURES = ["Algorithm", "Trained Layers", "Epoch", "Capacity", "LR level"]
CAT_FEATURES = ["Algorithm", "Trained Layers"]  # the paper's Algo / Preset
FIT_FEATURES = [*FEATURES, NULL]  # every fit also gets the planted null factor (null_check)
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
    shap: np.ndarray | None = None  # rows x FIT_FEATURES (the paper's five, then the planted null)
    y: np.ndarray | None = None
    pred: np.ndarray | None = None  # the model's predictions on the fit set
    expected: float = float("nan")  # the SHAP base value: predictions = expected + row sums of shap
    r2_train: float = float("nan")
    r2_cv: float = float("nan")
    n_folds: int = 0
    note: str = ""  # why no fit, or why unreliable
    n: int = 0  # checkpoints in the fit set
    rows: list = field(default_factory=list)  # (cell, seed, step) per row
    attribution: list = field(default_factory=list)  # per feature: null_check.attribution's rows

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
    s = paper_levels(s[s["score"].notna().to_numpy() & is_target]).copy()  # one model per target column
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
    """One CatBoostRegressor per (metric column, category) on the five features and the planted null,
    its SHAP values, its training R^2 and its R^2 cross-validated over seeds (GroupKFold). SHAP values
    come from CatBoost's own exact TreeSHAP (``get_feature_importance(type='ShapValues')``), which is what
    ``shap.TreeExplainer`` calls for CatBoost models; importing shap costs tens of seconds and adds
    nothing here. Native fine-tuning: its Capacity SHAP value is added to its Algorithm SHAP value and set
    to 0. A reliable model is then refitted on bootstrap resamples of its runs (null_check), and each
    factor's importance counts as real only where it beats the null's."""
    res = ShapResult(category, column, n=len(rows))
    if len(rows) < MIN_ROWS:
        res.note = f"only {len(rows)} checkpoint(s) in the fit set (need {MIN_ROWS})"
        return res
    y = rows["score"].to_numpy(float)
    if np.ptp(y) == 0:
        res.note = "the score is constant over the fit set"
        return res
    runs = list(zip(rows["cell"].astype(str), rows["seed"]))
    X = rows[FEATURES].reset_index(drop=True).assign(**{NULL: planted_null(runs, 0)})
    from catboost import CatBoostError, CatBoostRegressor, Pool

    native = (X["Algorithm"] == NATIVE).to_numpy()

    def model():
        return CatBoostRegressor(**CATBOOST_PARAMS, thread_count=1, verbose=False)

    def shap_of(Xf: pd.DataFrame, yf: np.ndarray):
        m = model()
        m.fit(Xf, yf, cat_features=CAT_FEATURES)
        full = m.get_feature_importance(
            Pool(Xf, cat_features=CAT_FEATURES), type="ShapValues", thread_count=1
        )
        return m, _fold_native(full[:, :-1], (Xf["Algorithm"] == NATIVE).to_numpy()), float(full[0, -1])

    try:
        m, phi, res.expected = shap_of(X, y)
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
    res.X, res.shap, res.y = X.copy(), phi, y
    res.X.loc[native, "Capacity"] = np.nan
    res.rows = list(rows[["cell", "seed", "step"]].itertuples(index=False, name=None))
    if not res.n_folds:
        res.note = "one seed only: no cross-validated R^2, attributions unverified"
    elif math.isnan(res.r2_cv) or res.r2_cv < R2_RELIABLE:
        res.note = f"cross-validated R^2 {res.r2_cv:.2f} < {R2_RELIABLE}: attributions unreliable"
    refits = None
    if not res.note:  # only a model worth reading is worth the refits

        def refit(idx: np.ndarray, null: np.ndarray) -> np.ndarray:
            Xb = X.iloc[idx].reset_index(drop=True).assign(**{NULL: null})
            if np.ptp(y[idx]) == 0:
                return np.zeros(len(FIT_FEATURES))
            m = model()
            m.fit(Xb, y[idx], cat_features=CAT_FEATURES)
            # identical rows have identical SHAP values: explain each distinct row once, weighted
            key = Xb.astype(str).agg("|".join, axis=1)
            first = ~key.duplicated().to_numpy()
            weights = key.map(key.value_counts()).to_numpy()[first]
            full = m.get_feature_importance(
                Pool(Xb[first], cat_features=CAT_FEATURES),
                type="ShapValues",
                thread_count=1,
            )
            return importance(
                _fold_native(full[:, :-1], (Xb["Algorithm"] == NATIVE).to_numpy()[first]), weights
            )

        run_ids = np.array([f"{c}/{sd}" for c, sd in runs])
        cells = rows["cell"].astype(str).to_numpy()
        try:
            main = importance(phi)
            candidates = (main > main[FIT_FEATURES.index(NULL)]) & (res.X.nunique().to_numpy() > 1)
            refits = refit_importances(refit, run_ids, cells, FIT_FEATURES.index(NULL), candidates)
        except CatBoostError as e:
            res.note = f"CatBoost could not refit: {str(e).splitlines()[0]}"
    res.attribution = attribution(FIT_FEATURES, res.X, importance(phi), refits, res.note)
    return res


def _fold_native(phi: np.ndarray, native: np.ndarray) -> np.ndarray:
    """The paper's convention: native fine-tuning has no capacity; its Capacity SHAP joins Algorithm."""
    a, c = FEATURES.index("Algorithm"), FEATURES.index("Capacity")
    phi = phi.copy()
    phi[native, a] += phi[native, c]
    phi[native, c] = 0.0
    return phi


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
        att = {a["feature"]: a for a in r.attribution}
        for i, f in enumerate(FIT_FEATURES):
            row[f"mean_abs_shap_{f}"] = float(np.abs(r.shap[:, i]).mean()) if r.shap is not None else np.nan
            row[f"real_{f}"] = att[f]["real"] if f in att else False
        row["refits"] = max((a["refits"] for a in r.attribution), default=0)
        rows.append(row)
    return pd.DataFrame(rows)


def attribution_table(results: list[ShapResult]) -> pd.DataFrame:
    """One row per (category, metric column, feature): mean |SHAP|, rank, refits beating the planted null,
    whether the importance counts as real and, if not, why; with the rows behind the model."""
    rows = [
        {"category": r.category, **{k: r.column[k] for k in ID}, "n_rows": r.n, "r2_cv": r.r2_cv, **a}
        for r in results
        for a in sorted(r.attribution, key=lambda a: a["rank"])
    ]
    cols = ["category", *ID, "feature", "rank", "mean_abs_shap", "real", "beats_null", "refits", "reason"]
    return pd.DataFrame(rows, columns=[*cols, "n_rows", "r2_cv"])
