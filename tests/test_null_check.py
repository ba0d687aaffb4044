"""Attribution checked before it is shown: every CatBoost fit carries a planted null factor, and a factor's
SHAP importance counts as real only where it beats the null's in the fit and across bootstrap refits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import shap_input

from lycobench import analysis as an
from lycobench.analysis import null_check as nc

COLUMN = dict(metric="m", encoder="e", level="set", prompt_type="train")


@pytest.fixture
def quick_catboost(monkeypatch):
    """Fewer boosting rounds keep these fits under a few seconds; the paper's 300 are pinned elsewhere."""
    monkeypatch.setitem(an.CATBOOST_PARAMS, "iterations", 60)


def test_one_planted_effect_ranks_first_and_the_null_stays_below_the_line(quick_catboost):
    rows = shap_input(lambda r, rng: 0.3 * r["LR level"] + 0.05 * rng.standard_normal())
    res = an.fit_shap(rows, "object", COLUMN)
    assert res.reliable and list(res.X.columns) == an.FIT_FEATURES and res.shap.shape[1] == 6
    att = {a["feature"]: a for a in res.attribution}
    assert att["LR level"]["rank"] == 1 and att["LR level"]["real"]
    assert att["LR level"]["beats_null"] == att["LR level"]["refits"] == an.N_REFITS
    assert not att[an.NULL]["real"] and "planted null" in att[an.NULL]["reason"]
    others = [f for f in an.FEATURES if f != "LR level"]
    assert not any(att[f]["real"] for f in others)  # no effect: not above the null
    assert all(att[f]["reason"] for f in others)
    # the explanation stays additive with the null in the fit
    assert np.allclose(res.shap.sum(1) + res.expected, res.pred)
    table = an.attribution_table([res])
    assert table["feature"].iloc[0] == "LR level" and table["rank"].is_monotonic_increasing
    assert (table["n_rows"] == len(rows)).all()


def test_an_unreliable_model_gets_no_refits_and_shows_nothing_as_real(quick_catboost):
    res = an.fit_shap(shap_input(lambda r, rng: rng.random()), "object", COLUMN)
    assert not res.reliable
    assert all(not a["real"] and a["refits"] == 0 for a in res.attribution)
    assert all("unreliable" in a["reason"] for a in res.attribution if a["feature"] != an.NULL)


def test_the_null_is_one_random_level_per_run_and_reproducible():
    runs = [("a", 1)] * 3 + [("a", 2)] * 3 + [("b", 1)] * 3
    x = nc.planted_null(runs, 0)
    assert len(set(x[:3])) == len(set(x[3:6])) == len(set(x[6:])) == 1  # a run shares its level
    assert set(x) <= {1.0, 2.0, 3.0}
    assert np.array_equal(x, nc.planted_null(runs, 0))
    many = [(c, s) for c in range(40) for s in range(5)]
    draws = np.array([nc.planted_null(many, d) for d in range(3)])
    assert not np.array_equal(draws[0], draws[1])  # redrawn per refit
    assert set(np.unique(draws)) == {1.0, 2.0, 3.0}


def test_refits_resample_seeds_within_each_configuration():
    cells = np.repeat(["a", "a", "b", "b", "b"], 2)  # five runs of two checkpoints each
    runs = np.repeat(["a/23", "a/24", "b/23", "b/24", "b/25"], 2)
    for draw in range(5):
        idx, ids = nc.resample_runs(runs, cells, draw)
        assert (cells[idx] == "a").sum() == 4 and (cells[idx] == "b").sum() == 6  # design kept
        assert len(set(ids)) == 5  # every drawn run is a run of its own (with its own null level)


def test_attribution_rules_as_a_pure_function():
    X = pd.DataFrame({"A": [1, 2, 1, 2], "B": [1, 1, 1, 1], "C": [1, 2, 3, 1], nc.NULL: [1, 2, 2, 3]})
    feats = ["A", "B", "C", nc.NULL]
    main = np.array([0.5, 0.0, 0.05, 0.1])
    refits = np.array([[0.5, 0.0, 0.2, 0.1]] * 9 + [[0.5, 0.0, 0.05, 0.1]])
    att = {a["feature"]: a for a in nc.attribution(feats, X, main, refits)}
    assert att["A"]["real"] and att["A"]["beats_null"] == 10 and att["A"]["rank"] == 1
    assert not att["B"]["real"] and att["B"]["reason"] == "not varied in this fit set"
    assert not att["C"]["real"] and "planted null's in the fit" in att["C"]["reason"]
    # beating the null in the fit but not in enough refits is not enough
    att = {a["feature"]: a for a in nc.attribution(feats, X, np.array([0.5, 0, 0.2, 0.1]), refits)}
    assert not att["C"]["real"] and "9 of 10 refits" in att["C"]["reason"]
    # an unreliable model: nothing is real, whatever the numbers
    att = nc.attribution(feats, X, main, None, unreliable="cross-validated R^2 0.1 < 0.3")
    assert not any(a["real"] for a in att)


def test_refits_stop_early_when_no_factor_can_clear_the_bar():
    calls = []

    def fit(idx, null):
        calls.append(1)
        return np.array([0.1, 0.2])  # feature 0 never beats the null (column 1)

    out = nc.refit_importances(fit, np.array(["r1", "r2"]), np.array(["a", "a"]), null_col=1)
    assert len(out) == len(calls) == 1


def test_no_refit_without_a_candidate_and_candidates_decide_when_to_stop():
    calls = []

    def fit(idx, null):
        calls.append(1)
        return np.array([0.3, 0.1, 0.2])  # feature 0 beats the null (column 2), feature 1 never does

    runs, cells = np.array(["r1", "r2"]), np.array(["a", "a"])
    none = nc.refit_importances(fit, runs, cells, null_col=2, candidates=np.array([False, False, True]))
    assert none.shape == (0, 3) and not calls
    out = nc.refit_importances(fit, runs, cells, null_col=2, candidates=np.array([True, False, False]))
    assert len(out) == len(calls) == nc.N_REFITS  # a winning candidate needs every refit
