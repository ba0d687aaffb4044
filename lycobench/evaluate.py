"""Images + cached features -> metrics.parquet (long format), per checkpoint x leaf x prompt type.

The base model appears as checkpoint step 0 (same prompts and seeds), so every configuration can be
read against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from .data import Leaf
from .encoders import image_features, load_clip
from .metrics import METRICS
from .prompts import text_for_clip


def evaluate(cfg: DictConfig, images, leaves: list[Leaf], sweep_dir: Path) -> list[dict]:
    """``images`` is the images.parquet frame; returns rows of metrics.parquet."""
    wanted = list(cfg.evaluate.metrics)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise ValueError(f"evaluate.metrics: unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    if "image_similarity" in wanted and "squared_centroid_distance" not in wanted:
        wanted.append("squared_centroid_distance")  # the paper reads both together
    cache = sweep_dir / "cache"
    clip = load_clip(cfg.encoders)
    enc_name = f"{cfg.encoders.name}-clip"
    by_name = {leaf.name: leaf for leaf in leaves}
    refs = {
        name: image_features(clip, [it.image for it in leaf.items], cache) for name, leaf in by_name.items()
    }

    feats = image_features(clip, [sweep_dir / p for p in images["path"]], cache)
    texts = [text_for_clip(p, by_name[leaf]) for p, leaf in zip(images["prompt"], images["leaf"])]
    unique_texts = sorted(set(texts))
    text_feats = dict(zip(unique_texts, clip.encode_texts(unique_texts))) if unique_texts else {}

    rows = []
    for (step, leaf, ptype), group in images.groupby(["step", "leaf", "prompt_type"], sort=True):
        idx = group.index.to_numpy()
        gen = feats[idx]
        for name in wanted:
            m = METRICS[name]
            if m.inputs == "images+refs":
                value = m.fn(gen, refs[leaf])
            elif m.inputs == "images+texts":
                value = m.fn(gen, np.stack([text_feats[texts[i]] for i in idx]))
            else:
                value = m.fn(gen)
            rows.append(
                {
                    "step": int(step),
                    "leaf": leaf,
                    "prompt_type": ptype,
                    "metric": name,
                    "encoder": enc_name,
                    "level": "set",
                    "n": len(idx),
                    "value": float(value),
                }
            )
    return rows
