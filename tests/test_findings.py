"""The paper's findings tested on synthetic score tables whose truth is known: a true claim is reproduced,
a false one contradicted, noise inconclusive, an unvaried factor not tested; Table 1 compared with
Kendall's tau; and the statistics behind a verdict as properties of pure functions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lycobench import analysis as an

# the paper's design in miniature: defaults, one lr variation each side, attention only, more capacity
CONFIGS = {
    "lora": dict(algo="lora", target="attn-mlp", dim=8, alpha=4, factor=None, lr=5e-4),
    "lora-lr1e-3": dict(algo="lora", target="attn-mlp", dim=8, alpha=4, factor=None, lr=1e-3),
    "lora-lr1e-4": dict(algo="lora", target="attn-mlp", dim=8, alpha=4, factor=None, lr=1e-4),
    "lora-attn-only": dict(algo="lora", target="attn-only", dim=8, alpha=4, factor=None, lr=5e-4),
    "lora-dim32": dict(algo="lora", target="attn-mlp", dim=32, alpha=16, factor=None, lr=5e-4),
    "loha": dict(algo="loha", target="attn-mlp", dim=4, alpha=2, factor=None, lr=5e-4),
    "lokr": dict(algo="lokr", target="attn-mlp", dim=10000, alpha=1, factor=8, lr=5e-4),
    "full": dict(algo="full", target="attn-mlp", dim=0, alpha=0, factor=None, lr=1e-6),
    "full-lr5e-6": dict(algo="full", target="attn-mlp", dim=0, alpha=0, factor=None, lr=5e-6),
}
LEAVES = {"toy": "object", "hero": "character"}
COLUMNS = [
    ("image_similarity", "train"),
    ("image_similarity", "trigger"),
    ("image_similarity", "alter"),
    ("text_similarity", "alter"),
    ("vendi", "trigger"),
    ("style_loss", "style"),
    ("concept_leakage", "agnostic"),
]
ALGO_FIT = {"lora": 0.0, "loha": -0.05, "lokr": 0.05, "full": -0.1}  # the paper's Table 1 fidelity order


def paper_world(f: dict, epoch: float, lr_sign: float = 1.0) -> float:
    """Fidelity in a world where the paper is right (lr_sign=-1: where a higher lr lowers it)."""
    default_lr = 1e-6 if f["algo"] == "full" else 5e-4
    lr_up = float(np.sign(f["lr"] - default_lr))
    return (
        0.3
        + 0.04 * epoch
        + lr_sign * 0.2 * lr_up
        - 0.15 * (f["target"] == "attn-only")
        + 0.05 * (f["dim"] == 32)
        + ALGO_FIT[f["algo"]]
    )


def score_table(
    fid=paper_world, configs=CONFIGS, seeds=(23, 24, 25, 26), epochs=(2, 6, 10), noise=0.005, rng=0
):
    """(scores, configs) through the real pipeline (rank normalisation, aggregation, configuration table)
    from leaf values made by ``fid(factors, epoch)``: every other criterion trades off against fidelity,
    as the paper says; ``noise``: sd of independent noise on every value (fid=None: noise only)."""
    gen = np.random.default_rng(rng)
    rows = []
    for cell, f in configs.items():
        for seed in seeds:
            for k, epoch in enumerate(epochs):
                for leaf, category in LEAVES.items():
                    v = fid(f, epoch) if fid is not None else 0.5
                    truth = {
                        "image_similarity": v,
                        "text_similarity": 0.5 - 0.5 * v,
                        "vendi": 10 - 10 * v,
                        "style_loss": v,
                        "concept_leakage": 0.1 * v,
                    }
                    for metric, ptype in COLUMNS:
                        value = truth[metric] + noise * gen.standard_normal()
                        rows.append(
                            dict(cell=cell, seed=seed, step=100 * (k + 1), epoch=float(epoch), checkpoint=k + 1,
                                 is_base=False, **f, model="m", leaf=leaf, concept=leaf, subclass=None,
                                 category=category, metric=metric, encoder="e", level="set",
                                 prompt_type=ptype, n=4, value=value)
                        )  # fmt: skip
    raw = pd.DataFrame(rows)
    scores = an.aggregate(an.rank_normalise(raw))
    return scores, an.config_table(raw)


@pytest.fixture(scope="module")
def true_world():
    scores, configs = score_table()
    return an.findings_table(scores, configs, an.load_claims()).set_index(["id", "category"])


def test_true_claims_are_reproduced_with_their_effect_and_counts(true_world):
    f = true_world
    for claim in ("lr-fidelity", "lr-diversity", "attn-only-fidelity", "attn-only-controllability",
                  "capacity-fidelity", "epochs-fidelity", "epochs-preservation", "lokr-vs-lora-fidelity",
                  "loha-vs-lokr-diversity", "epochs-leakage"):  # fmt: skip
        row = f.loc[(claim, "all")]
        assert row["verdict"] == "reproduced", (claim, row.to_dict())
        assert row["ci_lo"] <= row["effect"] <= row["ci_hi"]
    lr = f.loc[("lr-fidelity", "all")]
    # two lr variations of LoRA and one of native, each paired with its default, over 4 seeds
    assert lr["n_pairs"] == 3 * 4 and lr["n_seeds"] == 4 and lr["n_checkpoints"] == 3 * 4 * 3 * 2
    assert (
        lr["effect"] > 0
        and "lora-lr1e-3 vs lora" in lr["compared"]
        and "lora vs lora-lr1e-4" in lr["compared"]
    )
    assert f.loc[("epochs-fidelity", "all"), "n_pairs"] == len(CONFIGS) * 4  # one per run
    for category in ("object", "character"):  # per category too
        assert f.loc[("lr-fidelity", category), "verdict"] == "reproduced"


def test_a_false_claim_is_contradicted(true_world):
    # the paper's over-training of objects: here fidelity keeps rising with epochs
    row = true_world.loc[("epochs-overtrain-objects-scenes", "object+scene")]
    assert row["verdict"] == "contradicted" and row["ci_lo"] > 0  # expected worse, got better
    scores, configs = score_table(fid=lambda f, e: paper_world(f, e, lr_sign=-1.0))
    f = an.findings_table(scores, configs, an.load_claims()).set_index(["id", "category"])
    assert f.loc[("lr-fidelity", "all"), "verdict"] == "contradicted"
    assert f.loc[("lr-controllability", "all"), "verdict"] == "contradicted"


def test_noise_is_inconclusive():
    scores, configs = score_table(fid=None, noise=0.05, rng=3)
    f = an.findings_table(scores, configs, an.load_claims())
    pooled = f[f["category"].isin(["all", "object+scene", "object"]) & (f["verdict"] != "not tested")]
    pooled = pooled.drop_duplicates("id")
    assert len(pooled) >= 15
    assert (pooled["verdict"] == "inconclusive").mean() >= 0.9  # 95% intervals: about 1 in 20 errs


def test_a_factor_the_sweep_does_not_vary_is_not_tested():
    keep = {k: v for k, v in CONFIGS.items() if k in ("lora", "loha", "lokr", "lora-attn-only")}
    scores, configs = score_table(configs=keep)
    f = an.findings_table(scores, configs, an.load_claims()).set_index(["id", "category"])
    row = f.loc[("lr-fidelity", "all")]
    assert row["verdict"] == "not tested" and "no learning rate" in row["reason"] and row["n_pairs"] == 0
    assert f.loc[("capacity-fidelity", "all"), "verdict"] == "not tested"
    assert "no scene" in f.loc[("lora-preservation-scenes", "scene"), "reason"]
    assert f.loc[("attn-only-fidelity", "all"), "verdict"] == "reproduced"  # what it varies is tested


def test_a_metric_the_sweep_did_not_measure_is_not_tested():
    scores, configs = score_table()
    scores = scores[scores["metric"] != "concept_leakage"]
    f = an.findings_table(scores, configs, an.load_claims()).set_index(["id", "category"])
    assert "measured no concept_leakage" in f.loc[("epochs-leakage", "all"), "reason"]


def test_table1_agreement_with_the_paper():
    scores, configs = score_table()
    t = an.table1_agreement(an.criteria_scores(scores), configs).set_index(["criterion", "group"])
    fid = t.loc[("fidelity", "all")]
    # this world orders fidelity as the paper's Table 1: tau = 1, every seed agrees
    assert fid["tau"] == pytest.approx(1.0) and fid["verdict"] == "agrees" and fid["n_configs"] == 5
    assert fid["n_seeds"] == 4 and fid["study_order"].startswith("full-lr-up=full-lr5e-6, lokr=lokr")
    # diversity falls with fidelity here, which is the paper's diversity order too; its controllability
    # order is not the reverse of its fidelity order (native 5e-6 above LoRA and LoKr): tau below 1
    assert t.loc[("diversity", "all"), "verdict"] == "agrees"
    assert 0 < t.loc[("controllability", "all"), "tau"] < 1
    anti = {"fidelity": {r: -v for r, v in an.load_table1()["fidelity"].items()}}
    rev = an.table1_agreement(an.criteria_scores(scores), configs, anti).set_index(["criterion", "group"])
    assert rev.loc[("fidelity", "all"), "verdict"] == "disagrees"


def test_table1_needs_three_of_its_configurations():
    keep = {k: v for k, v in CONFIGS.items() if k in ("lora", "loha")}
    scores, configs = score_table(configs=keep)
    t = an.table1_agreement(an.criteria_scores(scores), configs)
    assert (t["verdict"] == "not tested").all() and t["reason"].str.contains("2 of Table 1").all()


def test_table1_counts_the_configurations_that_have_scores_not_those_the_sweep_declares():
    scores, configs = score_table()
    crit = an.criteria_scores(scores)

    def diversity_without(cells):
        kept = crit[~(crit["cell"].isin(cells) & (crit["criterion"] == "diversity"))]
        return an.table1_agreement(kept, configs).set_index(["criterion", "group"]).loc[("diversity", "all")]

    three = diversity_without(["loha", "lokr"])  # 5 of Table 1's configurations declared, 3 scored
    assert three["verdict"] != "not tested" and three["n_configs"] == 3
    two = diversity_without(["loha", "lokr", "full"])  # 2 scored: a tau over 2 items is always +-1
    assert (
        two["verdict"] == "not tested" and two["n_configs"] == 2 and "have diversity scores" in two["reason"]
    )
    assert pd.isna(two["tau"])


def test_pooled_pairs_of_one_seed_count_once():
    """Runs of one training seed share data order and noise, so their pairs are not independent: with a null
    effect and a shared per-seed component, 26 configurations x 3 seeds must err about 1 time in 20, as
    3 independent units do (pairs counted as 78 units erred in about half of the studies)."""
    from lycobench.analysis.findings import judge

    rng = np.random.default_rng(5)
    wrong = 0
    studies = 1000
    for _ in range(studies):
        seed_part = rng.normal(0, 1.0, 3)
        diff = (seed_part[None, :] + rng.normal(0, 1.0, (26, 3))).ravel()
        eff = pd.DataFrame({"diff": diff, "seed": np.tile([23, 24, 25], 26), "n_checkpoints": 3})
        res = judge(eff, "better")
        wrong += res["verdict"] != "inconclusive"
        assert res["n_pairs"] == 78 and res["n_seeds"] == 3
    assert 0.02 < wrong / studies < 0.08
    # the effect is still the mean over pairs when every seed has as many pairs
    assert judge(eff, "better")["effect"] == pytest.approx(diff.mean())


def test_no_interval_when_every_seed_gives_the_same_effect():
    eff = pd.DataFrame({"diff": [0.1, 0.1, 0.1], "seed": [23, 24, 25], "n_checkpoints": 3})
    m, lo, hi = an.t_interval(eff["diff"])
    assert m == pytest.approx(0.1) and math.isnan(lo) and math.isnan(hi)
    from lycobench.analysis.findings import judge

    assert judge(eff, "better")["verdict"] == "inconclusive"


def test_claims_file_is_checked_and_names_the_problem(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text("- {id: x, contrast: weekdays, measure: fidelity, expect: up, claim: c}\n")
    with pytest.raises(ValueError) as e:
        an.load_claims(bad)
    assert str(bad) in str(e.value) and "weekdays" in str(e.value) and "better or worse" in str(e.value)
    ids = [c.id for c in an.load_claims()]
    assert len(ids) == len(set(ids)) >= 20


# --- the statistics, as properties --------------------------------------------------------------------


def test_t_interval_holds_the_mean_and_narrows_with_more_pairs():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 30):
        x = rng.normal(0.1, 0.05, n)
        m, lo, hi = an.t_interval(x)
        assert lo < m < hi and m == pytest.approx(x.mean())
        # shifting the effects shifts the interval; scaling them scales its width
        m2, lo2, hi2 = an.t_interval(x + 1)
        assert (lo2 - lo, hi2 - hi) == pytest.approx((1, 1))
        assert (an.t_interval(3 * x)[2] - an.t_interval(3 * x)[1]) == pytest.approx(3 * (hi - lo))
    w = [an.t_interval(np.tile([0.0, 1.0], k)) for k in (2, 8, 32)]
    assert w[0][2] - w[0][1] > w[1][2] - w[1][1] > w[2][2] - w[2][1]
    assert math.isnan(an.t_interval([0.3])[1]) and math.isnan(an.t_interval([])[0])


def test_t_interval_covers_at_its_level():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (4000, 3))  # three pairs, as in a three-seed study
    from scipy.stats import t

    half = t.ppf(0.975, 2) * x.std(1, ddof=1) / np.sqrt(3)
    covered = np.abs(x.mean(1)) <= half
    assert 0.93 < covered.mean() < 0.97
    # and the function agrees with this vectorised form
    for row, h in zip(x[:20], half[:20]):
        m, lo, hi = an.t_interval(row)
        assert hi - m == pytest.approx(h)


def test_verdict_properties():
    for lo, hi in ((0.1, 0.3), (-0.3, -0.1), (-0.1, 0.2), (0.0, 0.2)):
        v, w = an.verdict(lo, hi, "better", 3), an.verdict(lo, hi, "worse", 3)
        # the same interval read against the opposite expectation swaps reproduced and contradicted
        swap = {"reproduced": "contradicted", "contradicted": "reproduced", "inconclusive": "inconclusive"}
        assert w == swap[v]
        assert (v == "inconclusive") == (lo <= 0 <= hi)
    assert an.verdict(0.1, 0.3, "better", 3) == "reproduced"
    assert an.verdict(float("nan"), float("nan"), "better", 1) == "inconclusive"
    assert an.verdict(float("nan"), float("nan"), "better", 0) == "not tested"
    assert set(an.VERDICTS) == {"reproduced", "contradicted", "inconclusive", "not tested"}


def test_kendall_tau_and_its_bootstrap():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    assert an.kendall_tau([10, 20, 30, 40], ref) == pytest.approx(1.0)
    assert an.kendall_tau([40, 30, 20, 10], ref) == pytest.approx(-1.0)
    assert math.isnan(an.kendall_tau([1, 1, 1, 1], ref))
    from scipy.stats import kendalltau

    rng = np.random.default_rng(2)
    for _ in range(20):  # tau-b with ties, as scipy computes it
        x, y = rng.integers(0, 4, 6).astype(float), rng.integers(0, 4, 6).astype(float)
        if np.ptp(x) and np.ptp(y):
            assert an.kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)
    same = np.tile(ref[:, None], (1, 3)) + np.array([0.0, 0.1, 0.2])  # every seed agrees
    tau, lo, hi = an.tau_bootstrap(same, ref)
    assert tau == lo == hi == pytest.approx(1.0) and an.agreement(tau, lo, hi) == "agrees"
    mixed = np.column_stack([ref, ref[::-1], ref])  # one seed reverses the ranking
    tau, lo, hi = an.tau_bootstrap(mixed, ref)
    assert lo < 0 < hi and lo <= tau <= hi and an.agreement(tau, lo, hi) == "unclear"
    assert an.agreement(*an.tau_bootstrap(-same, ref)) == "disagrees"


def test_each_verdict_says_whether_its_encoder_metrics_track_the_oracle():
    from lycobench.report.findings_section import WEAK_PROXY, findings_section, proxy_check

    scores, configs = score_table()
    findings = an.findings_table(scores, configs, an.load_claims())

    def row(proxy, ptype, agreement, leaf="all", level="set", oracle="concept_detection"):
        return dict(proxy=proxy, proxy_encoder="world-dino", proxy_level=level, prompt_type=ptype, oracle=oracle,
                    leaf=leaf, agreement=agreement, n=72)  # fmt: skip

    validity = pd.DataFrame(
        [
            row("text_similarity", "alter", 0.01, level="image", oracle="attribute_accuracy"),
            row("image_similarity", "train", 0.8),
            row("image_similarity", "train", -0.9, leaf="toy"),  # per-leaf rows are not what the column reads
            row("image_similarity", "trigger", 0.7),
            row("image_similarity", "alter", 0.6),
            row("vendi", "trigger", float("nan"), oracle="oracle_vendi"),  # constant: no agreement
        ]
    )
    result = {
        "findings": findings,
        "scores": scores,
        "criteria_def": an.criteria_for(scores),
        "validity": validity,
    }
    weak = proxy_check("text_similarity(alter)", result)
    assert "weak proxy" in weak and "agreement +0.01, n 72" in weak and WEAK_PROXY > 0.01
    good = proxy_check("image_similarity(train)", result)
    assert "weak" not in good and "agreement +0.80" in good and "world-dino" in good
    assert "constant across checkpoints" in proxy_check("vendi(trigger)", result)
    assert proxy_check("style_loss(style)", result) == "–"  # no oracle counterpart in this sweep
    fidelity = proxy_check("fidelity", result)  # a criterion: one line per column behind it
    assert fidelity.count("<br>") >= 1 and "image_similarity(trigger)" in fidelity and "weak" not in fidelity
    assert proxy_check("text_similarity(alter)", {**result, "validity": validity.iloc[:0]}) == "–"
    # several levels of one metric: the level the finding scores counts (Vendi per set on <trigger>)
    levels = pd.DataFrame(
        [row("vendi", "trigger", 0.9, level="set"), row("vendi", "trigger", -0.5, level="prompt")]
    )
    assert "agreement +0.90" in proxy_check("vendi(trigger)", {**result, "validity": levels})
    assert "tracks the oracle?" in findings_section(result)
