"""Metrics: pure functions on features, each with a declared direction (higher or lower is better).

Definitions follow the LyCORIS paper (reference/paper-protocol.md, section 5). Features are rows;
functions L2-normalise them where the paper's definition does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., float]
    higher_is_better: bool
    inputs: str  # "images+refs" | "images+texts" | "images"
    paper_name: str


METRICS: dict[str, Metric] = {}


def metric(name: str, higher_is_better: bool, inputs: str, paper_name: str):
    def register(fn):
        METRICS[name] = Metric(name, fn, higher_is_better, inputs, paper_name)
        return fn

    return register


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@metric("image_similarity", True, "images+refs", "Image Similarity")
def image_similarity(gen: np.ndarray, ref: np.ndarray) -> float:
    """Mean cosine over all (generated, reference) pairs = <mean of unit gen, mean of unit ref>."""
    return float(normalize(gen).mean(0) @ normalize(ref).mean(0))


@metric("squared_centroid_distance", False, "images+refs", "Image Similarity-SCD")
def squared_centroid_distance(gen: np.ndarray, ref: np.ndarray) -> float:
    """||mean of unit gen - mean of unit ref||^2: fidelity without the reward for low diversity."""
    d = normalize(gen).mean(0) - normalize(ref).mean(0)
    return float(d @ d)


@metric("text_similarity", True, "images+texts", "Text Similarity")
def text_similarity(img: np.ndarray, txt: np.ndarray) -> float:
    """Mean cosine of each image with the (processed) text of its own prompt; plain cosine, no x100."""
    return float(np.mean(np.sum(normalize(img) * normalize(txt), axis=1)))


@metric("vendi", True, "images", "Diversity (Vendi)")
def vendi(x: np.ndarray) -> float:
    """Vendi score, q = 1: exp of the entropy of the eigenvalues of K/n, K the cosine-similarity kernel."""
    z = normalize(x)
    n = len(z)
    # The non-zero eigenvalues of Z Z^T / n equal those of Z^T Z / n: use the smaller matrix.
    gram = z.T @ z / n if n > z.shape[1] else z @ z.T / n
    lam = np.clip(np.linalg.eigvalsh(gram), 0, None)
    lam = lam[lam > 1e-12]
    return float(np.exp(-np.sum(lam * np.log(lam))))
