"""Quality measures of the world encoders (used by their training manifests and by ``world check``).

- ``clip_retrieval_at_10``: for each held-out render, the world CLIP must rank its own caption first among
  10 candidates (its caption and the captions of the 9 next held-out scenes).
- ``dino_knn_accuracy``: each held-out concept render takes the concept of its nearest neighbour (cosine)
  in a gallery of other renders of every concept; accuracy of that guess (``dino_knn``: also per category).
Held-out renders come from seed streams that encoder training never uses.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..concepts import concept_scene, load_concepts
from .data import render_32
from .views import class_caption, encoder_data

RETRIEVAL_SEED = 777_001
GALLERY_SEED, QUERY_SEED = 777_002, 777_003
# gallery images per concept (the measure's difficulty: a larger gallery makes the nearest neighbour an
# easier guess) and queries per concept (its noise: at 20, a category moved by up to 0.2 between two draws)
KNN_PER_CONCEPT, KNN_QUERIES = 20, 60


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-8)


def clip_retrieval_at_10(clip, n: int = 500) -> float:
    scenes, images = encoder_data(n, RETRIEVAL_SEED)
    rng = np.random.default_rng(RETRIEVAL_SEED)
    concepts = load_concepts()
    texts = [class_caption(s, concepts, rng) for s in scenes]
    img = _unit(clip.encode_images(images))
    txt = _unit(clip.encode_texts(texts))
    hits = 0
    for i in range(n):
        cand = [(i + k) % n for k in range(10)]
        best = cand[int(np.argmax(txt[cand] @ img[i]))]
        hits += texts[best] == texts[i]  # an identical caption of another scene is as right
    return hits / n


def concept_renders(seed: int, per_concept: int) -> tuple[np.ndarray, list[str]]:
    """``per_concept`` renders of every concept (leaves in turn), as its training images look. Each concept
    draws from its own stream, so a change to one concept leaves the others' renders as they were."""
    scenes, names = [], []
    for c in load_concepts().values():
        rng = np.random.default_rng([seed, zlib.crc32(c.name.encode())])
        for i in range(per_concept):
            scenes.append(concept_scene(c, c.leaves[i % len(c.leaves)], rng))
            names.append(c.name)
    return render_32(scenes), names


def dino_knn(dino, per_concept: int = KNN_PER_CONCEPT, queries: int | None = KNN_QUERIES) -> dict:
    """``per_concept`` gallery renders and ``queries`` query renders of every concept: ``accuracy`` over
    every query and ``by_category`` (the concepts' categories: each must be told
    apart, not only the easiest)."""
    g_img, g_names = concept_renders(GALLERY_SEED, per_concept)
    q_img, q_names = concept_renders(QUERY_SEED, queries or per_concept)
    sim = _unit(dino.encode_images(q_img)) @ _unit(dino.encode_images(g_img)).T
    right = np.asarray([g_names[j] == name for j, name in zip(sim.argmax(1), q_names)])
    category = {c.name: c.category for c in load_concepts().values()}
    cats = np.asarray([category[n] for n in q_names])
    by = {c: round(float(right[cats == c].mean()), 4) for c in sorted(set(cats))}
    return {"accuracy": float(right.mean()), "by_category": by}


def dino_knn_accuracy(dino, per_concept: int = KNN_PER_CONCEPT) -> float:
    return dino_knn(dino, per_concept)["accuracy"]
