"""Can a SHAP model tell a real factor from noise? Every fit gets a planted null factor (levels drawn at
random per run, independent of everything); a factor's importance counts as real only where it beats the
null's in the fit and across bootstrap refits. Pure functions on arrays and frames; the fitting itself is
passed in (shap.fit_shap), so this module can be tested without CatBoost."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

NULL = "Null (planted)"
NULL_LEVELS = 3  # as many levels as Epoch and LR level: a null with fewer would be handicapped
NULL_SEED = 20230926  # fixed: the same rows give the same null, so reports rebuild byte for byte
# Bootstrap refits per reliable model, and the share of them a real factor must beat the null in: with 10
# refits a 95% share is all 10. Each refit costs a full fit (~0.2-0.5 s on a loaded core), and 10 keep the
# default study's report within seconds of what it was (docs/analysis.md has the timings).
N_REFITS = 10
BEAT_SHARE = 0.95


def planted_null(runs: list, draw: int) -> np.ndarray:
    """One random level per run (rows of one run share it, as a run-level factor would), drawn from a
    generator seeded by ``draw`` only: independent of the scores and of every factor."""
    uniq = sorted(set(runs), key=str)
    levels = np.random.default_rng([NULL_SEED, draw]).integers(1, NULL_LEVELS + 1, len(uniq))
    of = dict(zip(uniq, levels.astype(float)))
    return np.array([of[r] for r in runs])


def resample_runs(run_of_row: np.ndarray, cell_of_row: np.ndarray, draw: int) -> tuple[np.ndarray, list]:
    """A bootstrap resample stratified by configuration: each configuration keeps its number of runs,
    drawn with replacement from its own seeds (so every factor level stays in the design and only the
    training noise is resampled). Returns (row indices, a run id per drawn row: copies are new runs)."""
    rng = np.random.default_rng([NULL_SEED, draw, 1])
    idx, ids = [], []
    by_cell: dict = {}
    for r, c in dict.fromkeys(zip(map(str, run_of_row), map(str, cell_of_row))):
        by_cell.setdefault(c, []).append(r)
    run_str = np.array([str(r) for r in run_of_row])
    for c in sorted(by_cell):
        runs = by_cell[c]
        for k, pick in enumerate(rng.integers(0, len(runs), len(runs))):
            rows = np.flatnonzero(run_str == runs[pick])
            idx.extend(rows)
            ids.extend([f"{c}#{k}"] * len(rows))
    return np.array(idx, int), ids


def importance(shap: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean |SHAP| per feature (the paper's bar-plot importance); ``weights``: how many rows each row of
    ``shap`` stands for (identical feature rows have identical SHAP values, so refits explain each once)."""
    return np.average(np.abs(shap), axis=0, weights=weights)


def refit_importances(
    fit: Callable[[np.ndarray, np.ndarray], np.ndarray],
    run_of_row: np.ndarray,
    cell_of_row: np.ndarray,
    null_col: int,
    candidates: np.ndarray | None = None,
    n_refits: int | None = None,
    share: float = BEAT_SHARE,
) -> np.ndarray:
    """Mean |SHAP| per feature on bootstrap refits: ``fit(rows, null levels)`` fits the model on those
    rows with that null and returns its importance per feature. ``candidates``: the features that beat
    the null in the main fit (the only ones that can be real; default all). Refits stop as soon as no
    candidate can still reach the bar, and none are made without a candidate. Returns a (refits done x
    features) array."""
    n_refits = n_refits or N_REFITS
    alive = None if candidates is None else np.asarray(candidates, bool).copy()
    if alive is not None:
        alive[null_col] = False
        if not alive.any():
            return np.zeros((0, len(alive)))
    allowed = n_refits - int(np.ceil(share * n_refits))  # losses a real factor may have
    out = []
    for b in range(n_refits):
        idx, ids = resample_runs(run_of_row, cell_of_row, b + 1)
        out.append(fit(idx, planted_null(ids, b + 1)))
        arr = np.array(out)
        losses = (arr <= arr[:, [null_col]]).sum(0)
        still = losses <= allowed
        still[null_col] = False
        if alive is not None:
            still &= alive
        if not still.any():
            break
    return np.array(out)


def attribution(
    features: list[str],
    X: pd.DataFrame,
    main_imp: np.ndarray,
    refits: np.ndarray | None,
    unreliable: str = "",
    share: float = BEAT_SHARE,
    n_refits: int | None = None,
) -> list[dict]:
    """Per feature: its importance, its rank, how many refits it beat the null in, whether it counts
    as real and, when not, why. ``unreliable``: why the whole model is not to be read (then no refits)."""
    n_refits = n_refits or N_REFITS
    null = features.index(NULL)
    order = np.argsort(-main_imp, kind="stable")
    rank = np.empty(len(features), int)
    rank[order] = np.arange(1, len(features) + 1)
    need = int(np.ceil(share * n_refits))
    rows = []
    for i, f in enumerate(features):
        wins = None if refits is None else int((refits[:, i] > refits[:, null]).sum())
        done = 0 if refits is None else len(refits)
        varied = X[f].nunique() > 1  # native rows' Capacity is NaN: folded into Algorithm
        if f == NULL:
            real, why = False, "the planted null: the line a real factor must clear"
        elif not varied:
            real, why = False, "not varied in this fit set"
        elif unreliable:
            real, why = False, unreliable
        elif main_imp[i] <= main_imp[null]:
            real, why = False, "no larger than the planted null's in the fit"
        elif wins is None or wins < need:
            real, why = (
                False,
                f"beats the planted null in {wins or 0} of {done} refits (needs {need} of {n_refits})",
            )
        else:
            real, why = True, ""
        rows.append(
            dict(
                feature=f,
                mean_abs_shap=float(main_imp[i]),
                rank=int(rank[i]),
                beats_null=wins,
                refits=done,
                real=real,
                reason=why,
            )
        )
    return rows
