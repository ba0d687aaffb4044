"""Metrics on encoder features (CLIP, DINO, style taps): fidelity, controllability, diversity, base-model
preservation and memorisation. Features are rows; paired inputs are permuted together."""

from __future__ import annotations

import numpy as np

from .registry import TooFewSamples, _need, metric, normalize

# --- fidelity ------------------------------------------------------------------------------------


@metric(
    "image_similarity",
    higher_is_better=True,
    inputs="refs",
    encoder="dino",
    levels=("set",),
    criterion="fidelity",
    paper_name="Image Similarity (DINOv2-padding)",
    formula="S = (1/nm) sum_i sum_j cos(g_i, r_j) = <mean_i g^_i, mean_j r^_j>; g = generated images of the "
    "set, r = all training images of the leaf, ^ = unit norm",
    conventions="DreamBooth's 'DINO' score is the same mean pairwise cosine (with DINO ViT-S/16); 'CLIP-I' is "
    "the same with CLIP image features. Some papers print it x100.",
    origin="paper",
    paper_prompt_types=("train", "trigger", "alter"),
    note="Rewards low diversity: 1 - S = (SCD + Var_g + Var_r) / 2. Read it with squared_centroid_distance.",
)
def image_similarity(gen: np.ndarray, ref: np.ndarray) -> float:
    _need(min(len(gen), len(ref)), 1, "image_similarity")
    return float(normalize(gen).mean(0) @ normalize(ref).mean(0))


@metric(
    "squared_centroid_distance",
    higher_is_better=False,
    inputs="refs",
    encoder="dino",
    levels=("set",),
    criterion="fidelity",
    paper_name="Image Similarity-SCD",
    formula="SCD = || mean_i g^_i - mean_j r^_j ||^2 (centroids of the unit-norm features)",
    conventions="No other tool reports it; it is the paper's diversity-neutral fidelity measure.",
    origin="paper",
    paper_prompt_types=("trigger",),
)
def squared_centroid_distance(gen: np.ndarray, ref: np.ndarray) -> float:
    _need(min(len(gen), len(ref)), 1, "squared_centroid_distance")
    d = normalize(gen).mean(0) - normalize(ref).mean(0)
    return float(d @ d)


def _covariance_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


@metric(
    "frechet_distance",
    higher_is_better=False,
    inputs="refs",
    encoder="dino",
    levels=("set",),
    criterion="quality",
    paper_name="FD (in the authors' code, not in the paper's results)",
    formula="FD = ||mu_g - mu_r||^2 + tr S_g + tr S_r - 2 sum_k sqrt(lambda_k(S_g S_r)); mu, S = mean and "
    "covariance (ddof 1) of the raw features",
    conventions="FID is the same formula on Inception-v3 pool features (2048-d), FD_DINOv2 (dgm-eval) on "
    "DINOv2 ViT-L/14 (1024-d); clean-fid and torchmetrics match. Values are not comparable across encoders.",
    origin="paper code",
    params=("allow_rank_deficient",),
    note="Refused (no row, a warning) when either set has no more images than feature dimensions: the "
    "covariance is then rank-deficient and FD is dominated by the sample size. Use kid for small sets.",
)
def frechet_distance(gen: np.ndarray, ref: np.ndarray, allow_rank_deficient: bool = False) -> float:
    x, y = np.asarray(gen, np.float64), np.asarray(ref, np.float64)
    n, d = min(len(x), len(y)), x.shape[1]
    _need(n, 2, "frechet_distance")
    if n <= d and not allow_rank_deficient:
        raise TooFewSamples(
            f"frechet_distance: {n} images for {d}-dimensional features (needs more images than dimensions); "
            "use kid, or set evaluate.params.frechet_distance.allow_rank_deficient=true"
        )
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    # The eigenvalues of S1 S2 equal those of the symmetric PSD matrix S1^1/2 S2 S1^1/2: real and >= 0,
    # so the trace term never turns complex (unlike scipy.linalg.sqrtm on a near-singular product).
    r = _covariance_sqrt(s1)
    lam = np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)
    diff = x.mean(0) - y.mean(0)
    fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(lam).sum()
    return float(max(fd, 0.0))  # FD is a squared distance; only rounding can take it below 0


@metric(
    "kid",
    higher_is_better=False,
    inputs="refs",
    encoder="dino",
    levels=("set",),
    criterion="quality",
    paper_name="",
    formula="unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 on the raw features: mean_{i!=j} k(g_i, g_j) + "
    "mean_{i!=j} k(r_i, r_j) - 2 mean_{i,j} k(g_i, r_j), over the full sets (no subsets)",
    conventions="KID (Binkowski et al. 2018) as in clean-fid and torchmetrics, which average it over random "
    "subsets (e.g. 100 x 1000 images) and often print KID x 1000; lycobench uses all images once, so the value "
    "is deterministic. Unbiased: it can be slightly negative, and is not clipped at 0.",
    origin="lycobench",
    note="The small-sample alternative to FD (needs only 2 images per set).",
)
def kid(gen: np.ndarray, ref: np.ndarray) -> float:
    x, y = np.asarray(gen, np.float64), np.asarray(ref, np.float64)
    m, n, d = len(x), len(y), x.shape[1]
    _need(min(m, n), 2, "kid")

    def k(a, b):
        return (a @ b.T / d + 1.0) ** 3

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * kxy.mean())


# --- controllability -----------------------------------------------------------------------------


@metric(
    "text_similarity",
    higher_is_better=True,
    inputs="texts",
    encoder="clip",
    levels=("image",),
    criterion="controllability",
    paper_name="Text Similarity",
    formula="T = (1/n) sum_i cos(CLIP_img(x_i), CLIP_txt(proc(p_i))); p_i = the prompt of image i, proc = "
    "the paper's trigger-word processing",
    conventions="Plain cosine. CLIPScore (Hessel et al. 2021) = 2.5 x max(cos, 0); torchmetrics CLIPScore = "
    "100 x max(cos, 0); DreamBooth's 'CLIP-T' = plain cosine. Multiply by 100 or 2.5 (and clip at 0) to compare.",
    origin="paper",
    paper_prompt_types=("alter",),
)
def text_similarity(img: np.ndarray, txt: np.ndarray) -> float:
    _need(len(img), 1, "text_similarity")
    return float(np.mean(np.sum(normalize(img) * normalize(txt), axis=1)))


# --- diversity -----------------------------------------------------------------------------------


def vendi_from_kernel(k: np.ndarray) -> float:
    """exp of the Shannon entropy of the eigenvalues of K/n (order q = 1, 0 log 0 = 0); K has a unit diagonal."""
    lam = np.clip(np.linalg.eigvalsh(np.asarray(k, np.float64) / len(k)), 0, None)
    lam = lam[lam > 1e-12]
    return float(np.exp(-np.sum(lam * np.log(lam))))


@metric(
    "vendi",
    higher_is_better=True,
    inputs="images",
    encoder="dino",
    levels=("set", "prompt"),
    criterion="diversity",
    paper_name="Diversity (Vendi)",
    formula="VS = exp(-sum_k lambda_k log lambda_k), lambda = eigenvalues of K/n, K_ij = cos(z_i, z_j) "
    "(linear kernel on unit-norm features), q = 1",
    conventions="Friedman & Dieng 2023; the vendi-score package and dgm-eval give the same value for the same "
    "kernel. Ranges from 1 (all alike) to n. Level 'set': one score over the set (the paper's <train> and "
    "<trigger>); level 'prompt': per prompt, then averaged (the paper's <alter>, 10 images per prompt).",
    origin="paper",
    paper_prompt_types=("trigger", "train", "alter"),
    note="The two levels coincide for a one-prompt set (<trigger>).",
)
def vendi(x: np.ndarray) -> float:
    z = normalize(x)
    _need(len(z), 1, "vendi")
    n = len(z)
    # The non-zero eigenvalues of Z Z^T / n equal those of Z^T Z / n: use the smaller matrix.
    if n > z.shape[1]:
        lam = np.clip(np.linalg.eigvalsh(z.T @ z / n), 0, None)
        lam = lam[lam > 1e-12]
        return float(np.exp(-np.sum(lam * np.log(lam))))
    return vendi_from_kernel(z @ z.T)


# --- base-model preservation ---------------------------------------------------------------------


@metric(
    "style_loss",
    higher_is_better=False,
    inputs="pairs",
    encoder="style",
    levels=("image",),
    criterion="preservation",
    paper_name="Model Preservation (style) / style loss",
    formula="L = (1/n) sum_i sum_t ||G_t(x_i) - G_t(b_i)||_F^2; G_t(x) = psi_t psi_t^T / (c_t h_t w_t), psi_t = "
    "tap t of the style encoder (VGG-19 conv1_1..conv5_1, the first four after their in-place ReLU as in the "
    "paper's code); b_i = the base model's image with the "
    "same prompt and seed",
    conventions="Gatys et al.'s style loss with the paper's normalisation and no per-layer weights. Style-transfer "
    "code often weights layers, uses the mean instead of the sum, or scales by 1e3-1e6: rescale to compare.",
    origin="paper",
    paper_prompt_types=("style",),
)
def style_loss(gen_grams: np.ndarray, base_grams: np.ndarray) -> float:
    """Mean over pairs of the squared distance of Gram vectors (see ``encoders.gram_vector``: the squared
    Euclidean distance of two Gram vectors is the sum over taps of squared Frobenius distances)."""
    _need(len(gen_grams), 1, "style_loss")
    d = np.asarray(gen_grams, np.float64) - np.asarray(base_grams, np.float64)
    return float(np.mean(np.sum(d * d, axis=1)))


@metric(
    "style_distance",
    higher_is_better=False,
    inputs="refs",
    encoder="style",
    levels=("set",),
    criterion="fidelity",
    paper_name="Style Similarity (a style loss: lower = closer)",
    formula="D = (1/nm) sum_i sum_j sum_t ||G_t(g_i) - G_t(r_j)||_F^2 = ||mu_g - mu_r||^2 + Var_g + Var_r over the "
    "concatenated Gram vectors (Var = mean squared distance to the mean)",
    conventions="The paper's all-pairs style loss to the training images (authors' allpair_msd); raw values "
    "about 150-8000 with VGG-19.",
    origin="paper",
    paper_prompt_types=("train", "trigger", "alter"),
    categories=("style",),
)
def style_distance(gen_grams: np.ndarray, ref_grams: np.ndarray) -> float:
    x, y = np.asarray(gen_grams, np.float64), np.asarray(ref_grams, np.float64)
    _need(min(len(x), len(y)), 1, "style_distance")
    mx, my = x.mean(0), y.mean(0)
    var = lambda z, m: float(np.mean(np.sum((z - m) ** 2, axis=1)))  # noqa: E731
    return float((mx - my) @ (mx - my) + var(x, mx) + var(y, my))


@metric(
    "base_drift",
    higher_is_better=False,
    inputs="pairs",
    encoder="dino",
    levels=("image",),
    criterion="preservation",
    paper_name="",
    formula="drift = (1/n) sum_i (1 - cos(f(x_i), f(b_i))); b_i = the base model's image with the same prompt "
    "and seed",
    conventions="lycobench's. On concept-agnostic prompts it measures how much fine-tuning changed what the base "
    "model draws for prompts that never mention the concept.",
    origin="lycobench",
)
def base_drift(gen: np.ndarray, base: np.ndarray) -> float:
    _need(len(gen), 1, "base_drift")
    return float(np.mean(1.0 - np.sum(normalize(gen) * normalize(base), axis=1)))


# --- memorisation --------------------------------------------------------------------------------


def _nearest_similarity(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (normalize(gen) @ normalize(ref).T).max(axis=1)


@metric(
    "copy_similarity",
    higher_is_better=False,
    inputs="refs",
    encoder="dino",
    levels=("image",),
    criterion="memorisation",
    paper_name="",
    formula="C = (1/n) sum_i max_j cos(g_i, r_j): similarity of each image to its nearest training image",
    conventions="Somepalli et al. 2023 search nearest training images with SSCD features; DINO features are "
    "the common substitute. Read with image_similarity: high fidelity is wanted, copies are not.",
    origin="lycobench",
)
def copy_similarity(gen: np.ndarray, ref: np.ndarray) -> float:
    _need(min(len(gen), len(ref)), 1, "copy_similarity")
    return float(_nearest_similarity(gen, ref).mean())


@metric(
    "copy_rate",
    higher_is_better=False,
    inputs="refs",
    encoder="dino",
    levels=("image",),
    criterion="memorisation",
    paper_name="",
    formula="R = (1/n) sum_i [max_j cos(g_i, r_j) >= tau]; tau = evaluate.params.copy_rate.threshold",
    conventions="Somepalli et al. 2023 count a replication at SSCD similarity > 0.5. The default tau = 0.95 "
    "(DINO-style cosine) marks near-duplicates; calibrate it per encoder (the base model's copy rate, step 0, "
    "is the floor).",
    origin="lycobench",
    params=("threshold",),
)
def copy_rate(gen: np.ndarray, ref: np.ndarray, threshold: float = 0.95) -> float:
    _need(min(len(gen), len(ref)), 1, "copy_rate")
    return float(np.mean(_nearest_similarity(gen, ref) >= float(threshold)))
