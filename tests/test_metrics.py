"""Metrics against hand-computed values and their defining properties (order invariance, declared
direction, identities such as FD(X, X) = 0 and Vendi of k orthonormal features = k)."""

import numpy as np
import pytest
from scipy import linalg

from lycobench.metrics import (
    INPUTS,
    LEVELS,
    METRICS,
    TooFewSamples,
    attribute_accuracy,
    base_drift,
    concept_detection,
    concept_leakage,
    copy_rate,
    copy_similarity,
    frechet_distance,
    image_similarity,
    kid,
    oracle_drift,
    oracle_vendi,
    squared_centroid_distance,
    style_distance,
    style_loss,
    text_similarity,
    vendi,
)

rng = np.random.default_rng(0)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_every_metric_has_a_complete_card():
    for m in METRICS.values():
        assert isinstance(m.higher_is_better, bool)
        assert m.inputs in INPUTS and m.levels and all(lv in LEVELS for lv in m.levels)
        assert m.encoder in ("clip", "dino", "style", "oracle")
        assert m.formula and m.conventions and m.criterion
        assert m.origin in ("paper", "paper code", "lycobench")
        assert bool(m.paper_name) == (m.origin != "lycobench"), m.name
    assert (
        METRICS["image_similarity"].higher_is_better
        and not METRICS["squared_centroid_distance"].higher_is_better
    )
    # the paper's encoders for its metrics
    assert METRICS["image_similarity"].encoder == "dino" and METRICS["vendi"].encoder == "dino"
    assert METRICS["text_similarity"].encoder == "clip" and METRICS["style_loss"].encoder == "style"


# --- hand-computed references ------------------------------------------------------------------------


def test_image_similarity_and_scd_hand_computed():
    gen = np.array([[1.0, 0.0], [0.0, 2.0]])
    ref = np.array([[3.0, 0.0]])
    # cosines: (1,0).(1,0) = 1, (0,1).(1,0) = 0 -> mean 0.5
    assert image_similarity(gen, ref) == pytest.approx(0.5)
    # centroids (0.5, 0.5) and (1, 0): squared distance 0.25 + 0.25
    assert squared_centroid_distance(gen, ref) == pytest.approx(0.5)


def test_image_similarity_equals_mean_pairwise_cosine():
    gen, ref = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    assert image_similarity(gen, ref) == pytest.approx((unit(gen) @ unit(ref).T).mean())


def test_similarity_identity_with_scd_and_variances():
    # 1 - S = 0.5 (SCD + Var1 + Var2), Var = 1 - |mean of unit vectors|^2 (docs/paper-protocol.md, section 5.2)
    gen, ref = rng.normal(size=(9, 6)), rng.normal(size=(5, 6))
    var = lambda z: 1 - np.sum(unit(z).mean(0) ** 2)  # noqa: E731
    assert 1 - image_similarity(gen, ref) == pytest.approx(
        0.5 * (squared_centroid_distance(gen, ref) + var(gen) + var(ref))
    )


def test_text_similarity_pairs_rows_and_is_not_clipped():
    img = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert text_similarity(img, img) == pytest.approx(1.0)
    assert text_similarity(img, img[::-1]) == pytest.approx(0.0)
    assert text_similarity(img, -img) == pytest.approx(-1.0)  # plain cosine: no clipping at 0, no x100
    assert text_similarity(np.array([[3.0, 4.0]]), np.array([[1.0, 0.0]])) == pytest.approx(0.6)


def test_vendi_hand_computed_and_defining_values():
    for k in (1, 3, 8):
        assert vendi(np.eye(k)) == pytest.approx(k)
        assert vendi(np.eye(k) * 5.0) == pytest.approx(k), "scale does not matter: features are normalised"
    assert vendi(np.tile(rng.normal(size=(1, 6)), (10, 1))) == pytest.approx(1.0)
    # more samples than dimensions takes the d x d path; same answer
    assert vendi(np.vstack([np.eye(3)] * 4)) == pytest.approx(3.0)
    # two vectors at 60 degrees: K = [[1, .5], [.5, 1]], eigenvalues of K/2: 0.75, 0.25
    two = np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert vendi(two) == pytest.approx(np.exp(h))


def test_fd_hand_computed_and_against_scipy_sqrtm():
    # 1-D: means 1 and 4, variances (ddof 1) 2 and 2: FD = 9 + 2 + 2 - 2 sqrt(4) = 9
    assert frechet_distance(np.array([[0.0], [2.0]]), np.array([[3.0], [5.0]])) == pytest.approx(9.0)
    x, y = rng.normal(size=(40, 4)), rng.normal(loc=0.5, scale=2.0, size=(50, 4))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(x, y) == pytest.approx(ref, rel=1e-9)


def test_fd_of_a_set_with_itself_is_zero_and_small_samples_are_refused():
    x = rng.normal(size=(30, 5))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    small = rng.normal(size=(8, 16))  # fewer images than dimensions: rank-deficient covariance
    with pytest.raises(TooFewSamples, match="use kid"):
        frechet_distance(small, rng.normal(size=(40, 16)))
    # allowed explicitly, it stays a real, non-negative number
    value = frechet_distance(small, small[::-1] + 1e-3, allow_rank_deficient=True)
    assert isinstance(value, float) and np.isfinite(value) and value >= 0


def test_kid_hand_computed():
    # d = 1, k(a, b) = (ab + 1)^3. x = {0, 1}: k(0,1) = 1. y = {1, 2}: k(1,2) = 27.
    # cross: k(0,1) = 1, k(0,2) = 1, k(1,1) = 8, k(1,2) = 27 -> mean 9.25. MMD^2 = 1 + 27 - 18.5 = 9.5
    assert kid(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])) == pytest.approx(9.5)
    with pytest.raises(TooFewSamples):
        kid(np.array([[0.0]]), np.array([[1.0], [2.0]]))


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    assert abs(kid(a, b)) < 0.02
    assert kid(a, b + 1.0) > 0.5


def test_style_loss_and_style_distance_hand_computed():
    g = np.array([[1.0, 0.0], [0.0, 0.0]])
    b = np.array([[0.0, 0.0], [0.0, 2.0]])
    assert style_loss(g, b) == pytest.approx((1.0 + 4.0) / 2)  # mean squared distance of the pairs
    assert style_loss(g, g) == 0.0
    # all pairs: |g1-b1|^2 = 1, |g1-b2|^2 = 5, |g2-b1|^2 = 0, |g2-b2|^2 = 4 -> mean 2.5
    assert style_distance(g, b) == pytest.approx(2.5)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    pairs = np.mean([[np.sum((u - v) ** 2) for v in y] for u in x])
    assert style_distance(x, y) == pytest.approx(pairs)


def test_base_drift_and_copy_metrics_hand_computed():
    gen = np.array([[1.0, 0.0], [1.0, 1.0]])
    base = np.array([[2.0, 0.0], [-1.0, 1.0]])
    assert base_drift(gen, base) == pytest.approx(((1 - 1) + (1 - 0)) / 2)
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    # nearest similarities: 1 and cos(45 deg)
    assert copy_similarity(gen, ref) == pytest.approx((1 + np.sqrt(0.5)) / 2)
    assert copy_rate(gen, ref, threshold=0.95) == pytest.approx(0.5)
    assert copy_rate(gen, ref, threshold=0.7) == pytest.approx(1.0)


def test_oracle_metrics_hand_computed():
    assert concept_detection(["duck", "none", "duck", "bear"], "duck") == pytest.approx(0.5)
    assert concept_leakage(["none", "duck", "none", "lake"], {"duck", "bear"}) == pytest.approx(0.25)
    pred = [
        {"bg_colour": "pink", "count": 1, "shapes": frozenset({"circle"}), "leaf": "none"},
        {"bg_colour": "white", "count": 2, "shapes": frozenset({"star"}), "leaf": "none"},
    ]
    expected = [{"bg_colour": "pink", "count": 2}, {"shapes": frozenset({"star"})}]
    assert attribute_accuracy(pred, expected) == pytest.approx(2 / 3)  # pink yes, count no, star yes
    with pytest.raises(TooFewSamples):
        attribute_accuracy(pred, [{}, {}])
    # the two images agree on 1 of 4 heads (leaf)
    assert oracle_drift(pred, pred) == 0.0
    assert oracle_drift(pred[:1], pred[1:]) == pytest.approx(3 / 4)  # bg, count, shapes differ; leaf equal
    # K = [[1, 1/4], [1/4, 1]] -> eigenvalues of K/2: 5/8, 3/8
    h = -(5 / 8 * np.log(5 / 8) + 3 / 8 * np.log(3 / 8))
    assert oracle_vendi(pred) == pytest.approx(np.exp(h))
    assert oracle_vendi([pred[0]] * 5) == pytest.approx(1.0)


# --- properties --------------------------------------------------------------------------------------


def _example(name: str, n: int = 12, d: int = 4):
    """Inputs of the right kind for each metric (n > d so FD is defined)."""
    m = METRICS[name]
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n + 3, d))
    if m.encoder == "oracle":
        return _oracle_example(name, n)
    if m.inputs in ("texts", "pairs"):
        return a, rng.normal(size=(n, d))
    if m.inputs in ("refs",):
        return a, b
    return (a,)


def _oracle_example(name: str, n: int):
    heads = ["red", "blue", "green"]
    pred = [{"bg_colour": heads[i % 3], "count": i % 2, "leaf": ["none", "duck"][i % 2]} for i in range(n)]
    base = [{"bg_colour": heads[(i + 1) % 3], "count": i % 2, "leaf": "none"} for i in range(n)]
    return {
        "concept_detection": ([p["leaf"] for p in pred], "duck"),
        "concept_leakage": ([p["leaf"] for p in pred], {"duck"}),
        "attribute_accuracy": (pred, [{"bg_colour": "red"}] * n),
        "oracle_vendi": (pred,),
        "oracle_drift": (pred, base),
    }[name]


def _permute(args, perm):
    """Permute the samples; paired inputs (texts, base images, expectations) move with them. A reference
    set (a different length) is left alone here."""
    n = len(perm)

    def p(a):
        if isinstance(a, np.ndarray) and len(a) == n:
            return a[perm]
        if isinstance(a, list) and len(a) == n:
            return [a[i] for i in perm]
        return a

    return [p(a) for a in args]


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_do_not_depend_on_sample_order(name):
    m = METRICS[name]
    args = _example(name)
    perm = rng.permutation(len(args[0]))
    permuted = _permute(args, perm)
    if m.inputs == "refs":  # the reference set in any order too
        permuted[1] = args[1][rng.permutation(len(args[1]))]
    assert m.fn(*permuted) == pytest.approx(m.fn(*args), rel=1e-9, abs=1e-12)


def _better_worse(name: str):
    """(better input, worse input) by the metric's own definition, to check the declared direction."""
    ref = rng.normal(size=(40, 6))
    near, far = ref[:30] + 0.05 * rng.normal(size=(30, 6)), rng.normal(loc=3.0, size=(30, 6))
    spread, clump = (
        rng.normal(size=(30, 6)),
        np.tile(rng.normal(size=(1, 6)), (30, 1)) + 0.01 * rng.normal(size=(30, 6)),
    )
    base = rng.normal(size=(30, 6))
    pred_good = [{"leaf": "duck", "bg_colour": "pink"} for _ in range(10)]
    pred_bad = [{"leaf": "none", "bg_colour": "white"} for _ in range(10)]
    varied = [{"leaf": "none", "bg_colour": c} for c in ("pink", "white", "gray", "black", "beige")]
    return {
        "image_similarity": ((near, ref), (far, ref)),
        "squared_centroid_distance": ((near, ref), (far, ref)),
        "frechet_distance": ((near, ref), (far, ref)),
        "kid": ((near, ref), (far, ref)),
        "style_distance": ((near, ref), (far, ref)),
        "copy_similarity": ((far, ref), (near, ref)),  # closer to a training image = more copying = worse
        "copy_rate": ((far, ref), (ref[:30], ref)),
        "text_similarity": ((near, ref[:30]), (far, ref[:30])),
        "vendi": ((spread,), (clump,)),
        "style_loss": ((base + 0.01, base), (base + 1.0, base)),
        "base_drift": ((base + 0.01, base), (-base, base)),
        "concept_detection": (
            ([p["leaf"] for p in pred_good], "duck"),
            ([p["leaf"] for p in pred_bad], "duck"),
        ),
        "concept_leakage": (
            ([p["leaf"] for p in pred_bad], {"duck"}),
            ([p["leaf"] for p in pred_good], {"duck"}),
        ),
        "attribute_accuracy": (
            (pred_good, [{"bg_colour": "pink"}] * 10),
            (pred_bad, [{"bg_colour": "pink"}] * 10),
        ),
        "oracle_vendi": ((varied,), (varied[:1] * 5,)),
        "oracle_drift": ((pred_good, pred_good), (pred_good, pred_bad)),
    }[name]


@pytest.mark.parametrize("name", sorted(METRICS))
def test_declared_direction(name):
    (good, bad), m = _better_worse(name), METRICS[name]
    g, b = m.fn(*good), m.fn(*bad)
    assert g != b
    assert (g > b) == m.higher_is_better, f"{name}: better input scored {g}, worse {b}"


@pytest.mark.parametrize("name", sorted(METRICS))
def test_results_are_finite_python_floats(name):
    value = METRICS[name].fn(*_example(name))
    assert type(value) is float and np.isfinite(value)


def test_paper_levels():
    from lycobench.metrics import paper_level

    assert paper_level("vendi", "alter") == "prompt" and paper_level("vendi", "trigger") == "set"
    assert (
        paper_level("text_similarity", "alter") == "image"
        and paper_level("image_similarity", "train") == "set"
    )


def test_concept_detection_counts_any_accepted_leaf():
    pred = ["lumi.brel", "lumi.tams", "bear", "lumi.brel"]
    assert concept_detection(pred, "lumi.brel") == 0.5
    assert concept_detection(pred, {"lumi.brel", "lumi.tams", "lumi.others"}) == 0.75
    assert concept_detection(pred, {"lumi.brel"}) == concept_detection(pred, "lumi.brel")
