"""The paper's analysis on hand-made tables: rank normalisation, aggregation, intervals over seeds, factor levels,
paired comparisons, criteria, Pareto fronts and CatBoost + SHAP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lycobench import analysis as an


def leaf_rows(values: dict, metric="image_similarity", leaf="a", base=None) -> pd.DataFrame:
    """Leaf-level raw rows: one checkpoint per (cell, value); an optional base-model row."""
    rows = [
        dict(cell=c, seed=1, step=10, epoch=1.0, checkpoint=1, is_base=False, value=v)
        for c, v in values.items()
    ]
    if base is not None:
        rows.append(dict(cell="base", seed=pd.NA, step=0, epoch=0.0, checkpoint=0, is_base=True, value=base))
    df = pd.DataFrame(rows)
    return df.assign(
        leaf=leaf,
        concept=leaf.split(".")[0],
        category="object",
        metric=metric,
        encoder="e",
        level="set",
        prompt_type="train",
    )


def test_rank_normalisation_matches_the_paper_by_hand():
    hi = an.rank_normalise(leaf_rows({"x": 0.1, "y": 0.3, "z": 0.3}, base=0.2)).set_index("cell")["score"]
    # ranks 1, 2.5, 2.5 among n = 3 -> (rank - 1) / (n - 1); the base beats one of three
    assert hi.to_dict() == pytest.approx({"x": 0.0, "y": 0.75, "z": 0.75, "base": 1 / 3})
    lo = an.rank_normalise(leaf_rows({"x": 0.1, "y": 0.3, "z": 0.3}, "squared_centroid_distance", base=0.3))
    lo = lo.set_index("cell")["score"]  # lower is better: 0.1 is the best
    assert lo.to_dict() == pytest.approx({"x": 1.0, "y": 0.25, "z": 0.25, "base": (0 + 2 / 2) / 3})


def test_rank_normalisation_pools_per_leaf_and_keeps_unknown_metrics_raw():
    df = pd.concat(
        [
            leaf_rows({"x": 1.0, "y": 2.0}, leaf="a"),
            leaf_rows({"x": 9.0, "y": 3.0}, leaf="b"),
            leaf_rows({"x": 1.0, "y": 2.0}, metric="not_a_registered_metric"),
        ]
    )
    s = an.rank_normalise(df)
    got = s[s["metric"] == "image_similarity"].set_index(["leaf", "cell"])["score"]
    assert got.to_dict() == {("a", "x"): 0.0, ("a", "y"): 1.0, ("b", "x"): 1.0, ("b", "y"): 0.0}
    unknown = s[s["metric"] == "not_a_registered_metric"]
    assert unknown["score"].isna().all() and unknown["higher_is_better"].isna().all()


def test_aggregation_averages_subclasses_then_classes_then_categories():
    parts = [
        leaf_rows({"x": 0.0, "y": 1.0}, leaf="hero.red").assign(category="character"),
        leaf_rows({"x": 0.0, "y": 1.0}, leaf="hero.blue").assign(category="character"),
        leaf_rows({"x": 1.0, "y": 0.0}, leaf="hero.cape").assign(category="character"),
        leaf_rows({"x": 0.0, "y": 1.0}, leaf="robot").assign(category="character"),
        leaf_rows({"x": 0.0, "y": 1.0}, leaf="tower").assign(category="scene"),
    ]
    s = an.aggregate(an.rank_normalise(pd.concat(parts, ignore_index=True)))
    y = s[s["cell"] == "y"].set_index(["scope", "group"])["score"]
    assert y[("class", "hero")] == pytest.approx(2 / 3)
    # category = mean of classes (hero 2/3, robot 1), not of the four leaves (3/4)
    assert y[("category", "character")] == pytest.approx((2 / 3 + 1) / 2)
    assert y[("all", "all")] == pytest.approx(((2 / 3 + 1) / 2 + 1) / 2)
    assert s.loc[(s["scope"] == "class") & (s["group"] == "hero"), "n_leaves"].eq(3).all()


def test_seed_interval_counts_each_seed_once():
    df = pd.DataFrame(
        {"g": ["a"] * 6 + ["b"] * 2, "seed": [1, 1, 2, 2, 3, 3, 1, 2], "v": [0, 0, 1, 1, 2, 2, 5, 5]}
    )
    out = an.seed_interval(df, ["g"], "v").set_index("g")
    a = out.loc["a"]  # seed means 0, 1, 2: t(0.975, 2) x sd 1 / sqrt(3)
    from scipy.stats import t

    half = t.ppf(0.975, 2) / np.sqrt(3)
    assert a["mean"] == 1 and a["n_seeds"] == 3
    assert (a["lo"], a["hi"]) == pytest.approx((1 - half, 1 + half))
    b = out.loc["b"]
    assert b["lo"] == b["hi"] == 5  # identical seeds: no spread
    single = an.seed_interval(df[df["seed"] == 1], ["g"], "v").set_index("g")
    assert (single["lo"] == single["mean"]).all() and (single["hi"] == single["mean"]).all()
    # two seeds: t(0.975, 1) = 12.7, far wider than their range (what a percentile bootstrap would give)
    pair = an.seed_interval(pd.DataFrame({"g": "c", "seed": [1, 2], "v": [0.2, 0.6]}), ["g"], "v").iloc[0]
    assert pair["lo"] < -2 and pair["hi"] > 2.8 and pair["mean"] == pytest.approx(0.4)
    scores = pd.DataFrame({"g": "c", "seed": [1, 2], "v": [0.2, 0.6]})  # normalised scores live in [0, 1]
    cut = an.seed_interval(scores, ["g"], "v", bounds=(0.0, 1.0)).iloc[0]
    assert (cut["lo"], cut["hi"]) == (0.0, 1.0)


def test_seed_interval_covers_at_its_level_with_three_seeds():
    """A study's 3 seeds, each with many correlated rows: 95% of intervals hold the true mean (a percentile
    bootstrap over the 3 seeds held it about 75% of the time)."""
    rng = np.random.default_rng(4)
    studies = 2000
    seed_effect = rng.normal(0, 1, (studies, 3))
    rows = []
    for s_ in range(studies):
        for k in range(3):
            for v in seed_effect[s_, k] + rng.normal(0, 0.2, 4):
                rows.append((s_, k, v))
    df = pd.DataFrame(rows, columns=["g", "seed", "v"])
    out = an.seed_interval(df, ["g"], "v")
    covered = ((out["lo"] <= 0) & (out["hi"] >= 0)).mean()
    assert 0.93 < covered < 0.97


# The paper's 26 configurations (docs/paper-protocol.md, section 3) as run.json factors.
def paper_configs() -> pd.DataFrame:
    rows = []

    def add(cid, algo, target="attn-mlp", lr=5e-4, dim=None, alpha=None, factor=None):
        rows.append(
            dict(
                cell=str(cid),
                algo=algo,
                target=target,
                lr=lr,
                dim=dim,
                alpha=alpha,
                factor=factor,
                model="sd15",
            )
        )

    for base, algo, d, a in ((1000, "lora", 8, 4), (1010, "loha", 4, 2)):
        big = 32 if algo == "lora" else 16
        add(base + 1, algo, dim=d, alpha=a)
        add(base + 2, algo, dim=big, alpha=big // 2)
        add(base + 3, algo, dim=big, alpha=1)
        add(base + 4, algo, "full", dim=d, alpha=a)
        add(base + 5, algo, "attn-only", dim=d, alpha=a)
    add(1006, "lora", lr=1e-4, dim=8, alpha=4)
    add(1008, "lora", lr=1e-3, dim=8, alpha=4)
    add(1016, "loha", lr=1e-3, dim=4, alpha=2)
    add(1018, "loha", lr=1e-4, dim=4, alpha=2)
    for cid, f, target, lr in (
        (1021, 8, "attn-mlp", 5e-4),
        (1022, 4, "attn-mlp", 5e-4),
        (1023, 12, "attn-mlp", 5e-4),
    ):
        add(cid, "lokr", target, lr, dim=10000, alpha=1, factor=f)
    for cid, target, lr in (
        (1024, "full", 5e-4),
        (1025, "attn-only", 5e-4),
        (1026, "attn-mlp", 1e-3),
        (1028, "attn-mlp", 1e-4),
    ):
        add(cid, "lokr", target, lr, dim=10000, alpha=1, factor=8)
    for cid, target, lr in (
        (1031, "attn-mlp", 1e-6),
        (1032, "full", 1e-6),
        (1033, "attn-only", 1e-6),
        (1034, "attn-mlp", 5e-6),
        (1035, "attn-mlp", 5e-7),
    ):
        add(cid, "full", target, lr, dim=0, alpha=0)
    return pd.DataFrame(rows)


def test_config_table_reproduces_the_papers_levels_and_exclusions():
    c = an.config_table(paper_configs()).set_index("cell")
    assert len(c) == 26
    assert sorted(c.index[c["is_default"]]) == ["1001", "1011", "1021", "1031"]
    assert sorted(c.index[~c["in_shap_fit"]]) == ["1003", "1013", "1023"]  # the paper's exclusions
    assert c.loc["1003", "exclude_reason"] == "alpha/dim differs from the default"
    assert c.loc["1023", "exclude_reason"] == "capacity below the default"
    cap = c.loc[c["in_shap_fit"], "capacity_level"]
    assert cap[["1001", "1011", "1021", "1004", "1025"]].eq(1).all()
    assert cap[["1002", "1012", "1022"]].eq(2).all()
    assert cap[["1031", "1032", "1033", "1034", "1035"]].eq(3).all()  # native: 3, as in the paper
    lr = c["lr_level"]
    assert lr[["1006", "1018", "1028", "1035"]].eq(1).all()
    assert lr[["1001", "1011", "1021", "1031"]].eq(2).all()
    assert lr[["1008", "1016", "1026", "1034"]].eq(3).all()
    assert c.loc["1005", "varied"] == "target" and c.loc["1022", "varied"] == "factor"
    assert sorted(an.table1_configs(c.reset_index())) == ["1001", "1011", "1021", "1031", "1034", "1035"]
    pairs = an.comparison_pairs(c.reset_index())
    assert ("1008", "1001", "lr vs default") in pairs and ("1001", "1011", "defaults") in pairs
    assert len(pairs) == 22 + 6


def test_factors_beyond_the_papers_are_compared_too():
    c = paper_configs().query("cell in ['1001', '1006']").assign(extra_multiplier=1.0)
    half = c[c["cell"] == "1001"].assign(cell="1001-x0.5", extra_multiplier=0.5)
    t = an.config_table(pd.concat([c, half])).set_index("cell")
    assert t.loc["1001", "is_default"] and t.loc["1001-x0.5", "varied"] == "multiplier"


def test_paired_comparison_effect_sizes():
    rows = []
    for seed in (1, 2, 3):
        for leaf, d in (("a", 0.2), ("b", 0.4)):
            rows.append(dict(cell="new", seed=seed, epoch=1.0, leaf=leaf, score=0.5 + d, value=1.0 + d))
            rows.append(dict(cell="old", seed=seed, epoch=1.0, leaf=leaf, score=0.5, value=1.0))
    df = pd.DataFrame(rows).assign(
        is_base=False, metric="vendi", encoder="e", level="set", prompt_type="trigger"
    )
    p = an.paired_comparisons(df, [("new", "old", "lr vs default")])
    pooled = p[p["epoch"].isna()].iloc[0]
    assert pooled["mean_diff"] == pytest.approx(0.3) and pooled["win_rate"] == 1
    assert pooled["d_z"] == pytest.approx(0.3 / np.std([0.2, 0.4] * 3, ddof=1))
    assert pooled["ci_lo"] == pytest.approx(0.3) and pooled["ci_hi"] == pytest.approx(0.3)  # same per seed
    assert pooled["n_units"] == 6 and pooled["n_seeds"] == 3 and pooled["raw_diff"] == pytest.approx(0.3)
    assert len(p) == 2  # epoch 1 and pooled


def crit_frame(table: dict) -> pd.DataFrame:
    rows = [
        dict(
            scope="all",
            group="all",
            cell=cell,
            seed=1,
            step=int(e),
            epoch=e,
            checkpoint=0,
            is_base=False,
            criterion=k,
            score=v,
        )
        for (cell, e), crits in table.items()
        for k, v in crits.items()
    ]
    return pd.DataFrame(rows)


def test_overfitting_alarm_and_best_checkpoint():
    crit = crit_frame(
        {
            ("a", 10.0): {"fidelity": 0.3, "controllability": 0.8, "diversity": 0.7},
            ("a", 30.0): {"fidelity": 0.6, "controllability": 0.5, "diversity": 0.68},
            ("b", 10.0): {"fidelity": 0.3, "controllability": 0.5, "diversity": 0.5},
            ("b", 30.0): {"fidelity": 0.6, "controllability": 0.52, "diversity": 0.5},
        }
    )
    alarms = an.overfitting_alarms(crit)
    assert list(alarms["cell"]) == ["a"] and alarms["falling"].iloc[0] == "controllability -0.30"
    best = an.best_checkpoints(crit).set_index("cell")
    assert best.loc["a", "best_epoch"] == 10 and best.loc["b", "best_epoch"] == 30
    assert best.loc["a", "best_fidelity_epoch"] == 30


def test_preservation_falls_back_to_train_prompts_without_style_prompts():
    def frame(cols):
        return pd.DataFrame([{"metric": m, "prompt_type": p} for m, p in cols])

    paper = frame([("style_loss", "style"), ("style_loss", "train"), ("vendi", "trigger")])
    assert an.criteria_for(paper) == {
        "diversity": [("vendi", "trigger")],
        "preservation": [("style_loss", "style")],
    }
    no_style = frame([("style_loss", "train"), ("image_similarity", "train")])
    assert an.criteria_for(no_style)["preservation"] == [("style_loss", "train")]
    assert an.scatter_pairs_for(no_style)[2] == (("image_similarity", "train"), ("style_loss", "train"))
    assert an.scatter_pairs_for(frame([("vendi", "trigger")]))[2][1] == ("style_loss", "style")


def test_the_papers_level_is_chosen_when_a_metric_has_several():
    df = pd.DataFrame(
        [
            ("vendi", "alter", "set"),
            ("vendi", "alter", "prompt"),
            ("vendi", "trigger", "set"),
            ("vendi", "trigger", "prompt"),
            ("image_similarity", "train", "set"),
            ("unregistered", "train", "a"),
            ("unregistered", "train", "b"),
        ],
        columns=["metric", "prompt_type", "level"],
    )
    kept = set(map(tuple, an.paper_levels(df).to_numpy()))
    assert kept == {
        ("vendi", "alter", "prompt"),  # the paper: Vendi per prompt on <alter>, per set elsewhere
        ("vendi", "trigger", "set"),
        ("image_similarity", "train", "set"),
        ("unregistered", "train", "a"),
        ("unregistered", "train", "b"),
    }


def test_pareto_front():
    x = np.array([0.1, 0.5, 0.9, 0.4, np.nan])
    y = np.array([0.9, 0.5, 0.1, 0.4, 1.0])
    assert an.pareto_mask(x, y).tolist() == [True, True, True, False, False]


def test_seed_folds_never_split_a_seed():
    seeds = np.array([23, 24, 25, 23, 24, 25, 23])
    folds = an.seed_folds(seeds)
    assert len(folds) == 3 and sorted(np.concatenate(folds)) == list(range(7))
    for f in folds:
        assert len(set(seeds[f])) == 1
    assert an.seed_folds(np.array([1, 1, 1])) == []
    assert len(an.seed_folds(np.arange(12) % 7)) == 5


def shap_input(score_fn, n_seeds=3, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for algo, cap in (("lora", 1.0), ("lora", 2.0), ("loha", 1.0), ("full", 3.0)):
        for target in ("attn-mlp", "attn-only"):
            for lr in (1.0, 2.0, 3.0):
                for epoch in (10.0, 30.0):
                    for s in range(n_seeds):
                        r = {
                            "Algorithm": algo,
                            "Trained Layers": target,
                            "Epoch": epoch,
                            "Capacity": cap,
                            "LR level": lr,
                        }
                        rows.append(
                            {
                                **r,
                                "cell": f"{algo}{cap}{target}{lr}",
                                "seed": 23 + s,
                                "step": int(epoch),
                                "score": score_fn(r, rng),
                            }
                        )
    return pd.DataFrame(rows)


def test_shap_attributes_a_known_effect_and_folds_native_capacity():
    rows = shap_input(lambda r, rng: 0.3 * r["LR level"] + 0.01 * rng.standard_normal())
    res = an.fit_shap(rows, "object", dict(metric="m", encoder="e", level="set", prompt_type="train"))
    assert res.reliable and res.r2_cv > 0.9 and res.n_folds == 3
    mean_abs = np.abs(res.shap).mean(0)
    assert mean_abs.argmax() == an.FEATURES.index("LR level")
    native = (res.X["Algorithm"] == "full").to_numpy()
    cap = an.FEATURES.index("Capacity")
    assert (res.shap[native, cap] == 0).all() and res.X.loc[native, "Capacity"].isna().all()
    # the explanation stays additive: SHAP values + expected value = the model's prediction
    assert np.allclose(res.shap.sum(1) + res.expected, res.pred)


def test_shap_on_noise_is_flagged_unreliable():
    rows = shap_input(lambda r, rng: rng.random())
    res = an.fit_shap(rows, "object", dict(metric="m", encoder="e", level="set", prompt_type="train"))
    assert res.shap is not None and not res.reliable and "unreliable" in res.note
    assert res.r2_train > res.r2_cv  # a flexible model fits noise it cannot predict


def test_shap_refuses_tiny_or_constant_inputs():
    col = dict(metric="m", encoder="e", level="set", prompt_type="train")
    assert "only 2" in an.fit_shap(shap_input(lambda r, rng: 1.0).head(2), "x", col).note
    assert "constant" in an.fit_shap(shap_input(lambda r, rng: 1.0), "x", col).note


def test_the_reports_parallel_fits_equal_fits_one_by_one():
    """The report fits its CatBoost models in worker processes (see the next test); each comes back as
    the same model a fit in this process gives."""
    from lycobench.report.shap_figures import _fit_missing

    col = dict(metric="m", encoder="e", level="set", prompt_type="train")
    rows = {
        "a": shap_input(lambda r, rng: 0.3 * r["LR level"] + 0.01 * rng.standard_normal()),
        "b": shap_input(lambda r, rng: 0.2 * r["Epoch"] / 30 + 0.01 * rng.standard_normal(), seed=1),
    }
    got = _fit_missing([("object", col, name, g, None) for name, g in rows.items()])
    for name, g in rows.items():
        want = an.fit_shap(g, "object", col)
        assert np.array_equal(got[name].shap, want.shap) and got[name].r2_cv == want.r2_cv
        assert got[name].attribution == want.attribution


def test_upstream_catboost_loggers_are_shared_by_threads():
    """CatBoost 1.2 keeps one logger per process: a fit entered while another thread's fit runs logs
    through that thread's logger, which the other thread resets when its fit ends (catboost issue 2620).
    So the report fits in processes (report/shap_figures._fit_missing). When this fails after an upgrade,
    loggers are per thread: threads would do again."""
    import threading

    from catboost import core

    stack = core._custom_loggers_stack
    entered, release = threading.Event(), threading.Event()

    def other_fit():
        with core.log_fixup():
            entered.set()
            release.wait(30)

    t = threading.Thread(target=other_fit)
    t.start()
    try:
        assert entered.wait(30)
        with core.log_fixup():
            mine_dropped = len(stack._stack) == 1  # this thread's push was a no-op: the other owns it
    finally:
        release.set()
        t.join()
    assert mine_dropped, "CatBoost gives each thread its own logger now: the report could fit in threads"


def test_catboost_settings_are_the_papers():
    assert (
        dict(iterations=300, learning_rate=0.1, random_seed=123, nan_mode="Min", allow_writing_files=False)
        == an.CATBOOST_PARAMS
    )
    assert an.CAT_FEATURES == ["Algorithm", "Trained Layers"]


@pytest.mark.slow
def test_catboost_shap_values_equal_shap_tree_explainer():
    """fit_shap takes CatBoost's own TreeSHAP; shap.TreeExplainer gives the same numbers (slow: importing
    shap takes tens of seconds)."""
    import shap
    from catboost import CatBoostRegressor

    rows = shap_input(
        lambda r, rng: 0.2 * r["Epoch"] / 30 + 0.1 * (r["Algorithm"] == "loha") + 0.01 * rng.random()
    )
    rows = rows[rows["Algorithm"] != "full"]  # no folding, so the values are comparable one to one
    res = an.fit_shap(rows, "object", dict(metric="m", encoder="e", level="set", prompt_type="train"))
    model = CatBoostRegressor(**an.CATBOOST_PARAMS, thread_count=1, verbose=False)
    X = res.X  # the five features and the planted null, as fitted
    assert list(X.columns) == an.FIT_FEATURES
    model.fit(X, rows["score"].to_numpy(), cat_features=an.CAT_FEATURES)
    assert np.allclose(shap.TreeExplainer(model).shap_values(X), res.shap)


def detection_rows(values: dict, leaf: str) -> pd.DataFrame:
    """Trigger-prompt concept detection per (cell, seed, step) checkpoint, plus a base-model row of 1.0
    (which must never count as learning)."""
    rows = [
        dict(cell=c, seed=s, step=st, epoch=st / 10, is_base=False, value=v)
        for (c, s, st), v in values.items()
    ]
    rows.append(dict(cell="base", seed=pd.NA, step=0, epoch=0.0, is_base=True, value=1.0))
    return pd.DataFrame(rows).assign(leaf=leaf, metric="concept_detection", prompt_type="trigger", n=16)


def test_concept_learning_counts_learned_checkpoints_per_leaf():
    learned = detection_rows(
        {("a", 1, 10): 0.5, ("a", 1, 30): 0.9, ("b", 1, 10): 0.8, ("b", 1, 30): 0.7}, "x"
    )
    never = detection_rows({("a", 1, 10): 0.0, ("a", 1, 30): 0.25, ("b", 1, 10): 0.1, ("b", 1, 30): 0.0}, "y")
    other = never.assign(prompt_type="alter", value=1.0)  # only trigger prompts count
    t = an.concept_learning(pd.concat([learned, never, other], ignore_index=True)).set_index("leaf")
    assert t.loc["x", "share_learned"] == 0.5 and t.loc["x", "best"] == 0.9 and t.loc["x", "checkpoints"] == 4
    assert t.loc["x", "images"] == 16
    assert (t.loc["x", "best_cell"], t.loc["x", "best_epoch"]) == ("a", 3.0)
    assert t.loc["x", "best_ties"] == 1  # 0.9 once; a best shared by many checkpoints says so
    assert t.loc["x", "median_last"] == pytest.approx(0.8)  # last checkpoints: 0.9 (a) and 0.7 (b)
    assert t.loc["y", "share_learned"] == 0 and t.loc["y", "median"] == pytest.approx(0.05)
    zero = an.concept_learning(detection_rows({("a", 1, 10): 0.0, ("b", 1, 10): 0.0}, "z")).iloc[0]
    assert (
        zero["best"] == 0 and pd.isna(zero["best_cell"]) and pd.isna(zero["best_epoch"])
    )  # no "best" of zeros
    warning = an.learning_warning(t.reset_index())
    assert "no checkpoint learned y" in warning and "x" not in warning.split("(")[0]


def test_no_learning_warning_when_most_checkpoints_learned_or_without_an_oracle():
    good = detection_rows({("a", 1, 10): 0.8, ("a", 1, 30): 1.0, ("b", 1, 10): 0.6, ("b", 1, 30): 0.9}, "x")
    assert an.learning_warning(an.concept_learning(good)) is None
    rarely = detection_rows({("a", 1, 10): 0.8, ("a", 1, 30): 0.1, ("b", 1, 10): 0.6, ("b", 1, 30): 0.2}, "x")
    assert "fewer than half of the checkpoints learned x" in an.learning_warning(an.concept_learning(rarely))
    no_oracle = good.assign(metric="image_similarity")
    assert (
        an.concept_learning(no_oracle).empty and an.learning_warning(an.concept_learning(no_oracle)) is None
    )


def test_learning_warning_tells_a_leaf_still_rising_from_one_that_fades():
    """More training is advised only where the median rate is highest at the last checkpoint; a leaf that
    peaked earlier and fell is said to fade (more exposures make it worse)."""
    rising = detection_rows(
        {("a", 1, 10): 0.1, ("a", 1, 30): 0.7, ("b", 1, 10): 0.2, ("b", 1, 30): 0.9}, "up"
    )
    fading = detection_rows(
        {("a", 1, 10): 0.5, ("a", 1, 20): 0.9, ("a", 1, 30): 0.3, ("b", 1, 10): 0.4, ("b", 1, 20): 0.7,
         ("b", 1, 30): 0.5}, "down",
    )  # fmt: skip
    t = an.concept_learning(pd.concat([rising, fading], ignore_index=True)).set_index("leaf")
    assert (t.loc["down", "peak_epoch"], t.loc["down", "median_peak"]) == (2.0, pytest.approx(0.8))
    assert (t.loc["up", "peak_epoch"], t.loc["up", "median_peak"]) == (3.0, pytest.approx(0.8))
    warning = an.learning_warning(t.reset_index())
    assert "up: the median rate is highest at the last checkpoint, so a larger training budget" in warning
    assert "down 0.80 at epoch 2, 0.40 at the last" in warning and "down:" not in warning
    # within FADE of the peak the last checkpoint counts as still rising (rate noise, not a fade)
    flat = detection_rows({("a", 1, 10): 0.5, ("a", 1, 30): 0.45}, "flat")
    assert "flat: the median rate is highest" in an.learning_warning(an.concept_learning(flat))


def test_best_checkpoint_of_a_single_checkpoint_has_no_rank_and_no_crash():
    """One run with one checkpoint (an external adapter): every rank score is NaN, nothing to pick from."""
    crit = crit_frame({("ext", 1.0): {"fidelity": np.nan, "controllability": np.nan}})
    best = an.best_checkpoints(crit).set_index("cell")
    assert best.loc["ext", "best_epoch"] == 1.0 and pd.isna(best.loc["ext", "balanced"])
    two = crit_frame({("x", 1.0): {"fidelity": np.nan}, ("x", 2.0): {"fidelity": np.nan}})
    assert pd.isna(an.best_checkpoints(two).set_index("cell").loc["x", "best_epoch"])


def test_a_leaf_the_oracle_has_no_class_for_is_named_not_scored_as_unlearned():
    """A user's concept: the oracle read its images (attribute rows) but rated no detection."""
    world = detection_rows({("a", 1, 10): 0.9}, "bear").assign(encoder="world-oracle")
    mine = world.assign(leaf="my-toy", metric="attribute_accuracy")
    raw = pd.concat([world, mine, mine.assign(metric="image_similarity", encoder="world-clip")])
    assert an.leaves_without_oracle(raw) == ["my-toy"]
    assert (
        list(an.concept_learning(raw)["leaf"]) == ["bear"]
        and an.learning_warning(an.concept_learning(raw)) is None
    )
    assert (
        "No oracle for this concept: my-toy" in an.no_oracle_note(["my-toy"])
        and an.no_oracle_note([]) is None
    )
    assert an.leaves_without_oracle(raw[raw["encoder"] != "world-oracle"]) == []  # no oracle at all: no claim
