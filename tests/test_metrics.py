"""Metrics against hand-computed values and their defining properties."""

import numpy as np
import pytest

from lycobench.metrics import METRICS, image_similarity, squared_centroid_distance, text_similarity, vendi

rng = np.random.default_rng(0)


def test_every_metric_declares_its_direction_and_inputs():
    for m in METRICS.values():
        assert isinstance(m.higher_is_better, bool)
        assert m.inputs in ("images+refs", "images+texts", "images")
    assert (
        METRICS["image_similarity"].higher_is_better
        and not METRICS["squared_centroid_distance"].higher_is_better
    )


def test_image_similarity_hand_computed():
    gen = np.array([[1.0, 0.0], [0.0, 2.0]])
    ref = np.array([[3.0, 0.0]])
    # cosines: (1,0)·(1,0)=1, (0,1)·(1,0)=0 -> mean 0.5
    assert image_similarity(gen, ref) == pytest.approx(0.5)
    # centroids (0.5,0.5) and (1,0): squared distance 0.25 + 0.25
    assert squared_centroid_distance(gen, ref) == pytest.approx(0.5)


def test_image_similarity_equals_mean_pairwise_cosine():
    gen, ref = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    g = gen / np.linalg.norm(gen, axis=1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert image_similarity(gen, ref) == pytest.approx((g @ r.T).mean())


def test_similarity_identity_with_scd_and_variances():
    # 1 - S = 0.5 (SCD + Var1 + Var2), Var = 1 - |mean of unit vectors|^2 (paper-protocol.md 5.2)
    gen, ref = rng.normal(size=(9, 6)), rng.normal(size=(5, 6))
    g = gen / np.linalg.norm(gen, axis=1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    var = lambda z: 1 - np.sum(z.mean(0) ** 2)  # noqa: E731
    assert 1 - image_similarity(gen, ref) == pytest.approx(
        0.5 * (squared_centroid_distance(gen, ref) + var(g) + var(r))
    )


def test_scd_of_a_set_with_itself_is_zero():
    x = rng.normal(size=(6, 4))
    assert squared_centroid_distance(x, x) == pytest.approx(0.0, abs=1e-12)


def test_text_similarity_pairs_rows():
    img = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert text_similarity(img, img) == pytest.approx(1.0)
    assert text_similarity(img, img[::-1]) == pytest.approx(0.0)
    assert text_similarity(img, -img) == pytest.approx(-1.0)  # plain cosine: not clipped at 0


def test_vendi_of_k_orthonormal_is_k_and_of_identical_is_one():
    for k in (1, 3, 8):
        assert vendi(np.eye(k)) == pytest.approx(k)
        assert vendi(np.eye(k) * 5.0) == pytest.approx(k), "scale does not matter: features are normalised"
    assert vendi(np.tile(rng.normal(size=(1, 6)), (10, 1))) == pytest.approx(1.0)
    # more samples than dimensions takes the d x d path; same answer
    assert vendi(np.vstack([np.eye(3)] * 4)) == pytest.approx(3.0)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_do_not_depend_on_sample_order(name):
    m = METRICS[name]
    a, b = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    perm = rng.permutation(8)
    if m.inputs == "images":
        assert m.fn(a[perm]) == pytest.approx(m.fn(a))
    else:  # texts are paired with their images, so permute both
        assert m.fn(a[perm], b[perm]) == pytest.approx(m.fn(a, b))
