"""One CatBoost + SHAP model per (category, metric column): fitted in parallel, cached as JSON, drawn as
beeswarms."""

from __future__ import annotations

import json
from pathlib import Path

from ..store import read_json
from .cache import Cache, frame_key, progress, slug, write_if_changed


def shap_models(scores, configs, out: Path, cache: Cache, result: dict):
    """One CatBoost + SHAP model per (category, metric column), cached by the content of its rows."""
    import pandas as pd

    from .. import analysis as an
    from .plots import Skip, beeswarm

    rows = an.shap_rows(scores, configs)
    rows = rows[rows["higher_is_better"].notna()]
    if rows.empty:
        result["skipped"].append(("SHAP", "CatBoost + SHAP", "no checkpoint in the SHAP fit set"))
        return pd.DataFrame()
    jobs = []
    for (category, *col), g in rows.groupby(["category", *an.ID], sort=True):
        column = dict(zip(an.ID, col))
        name = f"shap/{slug(category)}/{slug('-'.join(str(c) for c in col))}"
        g = g.sort_values(["cell", "seed", "step"])
        key = frame_key(g[["cell", "seed", "step", "score", *an.FEATURES]], extra=an.CATBOOST_PARAMS)
        jobs.append((category, column, name, g, key))
    fitted = _fit_missing([j for j in jobs if not cache.fresh(f"{j[2]}.json", j[4])])
    results = []
    for category, column, name, _g, key in jobs:
        label = f"{column['metric']}({column['prompt_type']})"
        if name in fitted:
            res = fitted[name]
            write_if_changed(out / f"{name}.json", _dump_shap(res))
        else:
            res = _load_shap(out / f"{name}.json")
        results.append(res)
        title = f"{category}: {label}"
        if res.shap is None:
            result["skipped"].append(("SHAP", title, res.note))
            continue
        if not cache.fresh(f"{name}.png", key):
            try:
                beeswarm(res, title, out / f"{name}.png")
            except Skip as e:
                result["skipped"].append(("SHAP", title, str(e)))
                continue
        result["figures"].append(("SHAP", title, f"{name}.png", _r2_caption(res), res.note))
    table = an.shap_table(results)
    cache.table("shap/summary.csv", table.to_csv(index=False, float_format="%.6g"))
    result["attribution"] = an.attribution_table(results)
    cache.table("shap/importance.csv", result["attribution"].to_csv(index=False, float_format="%.6g"))
    return table


def _fit_missing(jobs: list) -> dict:
    """CatBoost + SHAP fits not in the cache, on every core: each fit is single-threaded and seeded, so
    the models do not depend on how they are spread. In processes, not threads: CatBoost 1.2 keeps one
    logger per process, which a fit in one thread resets under a fit in another (catboost issue 2620;
    here it crashed the report with a segfault). tests/test_analysis.py's test_upstream_catboost_* notices
    the fix."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from .. import analysis as an

    done: dict = {}

    def finished(job, res):
        category, column, name, *_ = job
        done[name] = res
        progress(
            f"CatBoost + SHAP {len(done)}/{len(jobs)}: {category} / {column['metric']}({column['prompt_type']})"
        )

    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        for job in jobs:
            finished(job, an.fit_shap(job[3], job[0], job[1]))
        return done
    # spawn: the report process may hold threads (torch, BLAS) that a forked child would inherit locked
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(an.fit_shap, job[3], job[0], job[1]): job for job in jobs}
        for f in as_completed(futures):
            finished(futures[f], f.result())
    return done


def _r2_caption(res) -> str:
    cv = "n/a" if res.n_folds == 0 else f"{res.r2_cv:.2f}"
    return f"R² cross-validated by seed: {cv}; training R²: {res.r2_train:.2f}; n = {len(res.y)} checkpoints"


def _dump_shap(res) -> str:
    import math

    def num(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else x

    obj = {
        "category": res.category,
        "column": res.column,
        "r2_train": num(res.r2_train),
        "r2_cv": num(res.r2_cv),
        "n_folds": res.n_folds,
        "n": res.n,
        "note": res.note,
        "expected": num(res.expected),
        "attribution": res.attribution,
    }
    if res.shap is not None:
        obj["X"] = {c: [num(v) for v in res.X[c].tolist()] for c in res.X.columns}
        obj["shap"] = [[round(float(v), 10) for v in row] for row in res.shap]
        obj["y"] = [float(v) for v in res.y]
        obj["rows"] = [[c, int(s), int(st)] for c, s, st in res.rows]
    return json.dumps(obj, sort_keys=True) + "\n"


def _load_shap(path: Path):
    import numpy as np
    import pandas as pd

    from ..analysis import CAT_FEATURES, ShapResult

    obj = read_json(path)
    nan = float("nan")
    res = ShapResult(obj["category"], obj["column"])
    res.r2_train = nan if obj["r2_train"] is None else obj["r2_train"]
    res.r2_cv = nan if obj["r2_cv"] is None else obj["r2_cv"]
    res.n_folds, res.note, res.n = obj["n_folds"], obj["note"], obj.get("n", 0)
    res.expected = nan if obj.get("expected") is None else obj["expected"]
    res.attribution = obj.get("attribution", [])
    if "shap" in obj:
        res.X = pd.DataFrame(obj["X"])
        for c in res.X.columns:
            if c not in CAT_FEATURES:
                res.X[c] = res.X[c].astype(float)
        res.shap = np.array(obj["shap"], float)
        res.y = np.array(obj["y"], float)
        res.rows = [tuple(r) for r in obj["rows"]]
    return res
