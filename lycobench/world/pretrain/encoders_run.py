"""Train and ship the world CLIP and the DINO-style encoder (``world pretrain --what encoders``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..clip_dino import CLIP_DIR, DINO_DIR, load_world_clip, load_world_dino
from .clip_model import MODEL_CFG, save_clip, train_clip
from .dino import DINO_CONFIG, TEMPERATURE, train_dino
from .measure import clip_retrieval_at_10, dino_knn
from .run import code_version

# DINO views with SimCLR's colour distortion, and 70% concept scenes among its images (docs/world-v2.md,
# "The DINO-style encoder": kNN 0.675 -> 0.77 from these two, by measurement)
DEFAULTS = {"images": 12_000, "clip_steps": 600, "dino_steps": 1200, "batch": 64, "dino_colour": True,
            "dino_p_concept": 0.7}  # fmt: skip


def train_encoders(
    clip_dir: Path = CLIP_DIR, dino_dir: Path = DINO_DIR, seed: int = 0, threads: int = 2,
    log=print, train_clip_too: bool = True,
) -> dict[str, float]:  # fmt: skip
    """Train both encoders (the shipped step counts), save them, measure them on held-out renders."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    d = DEFAULTS
    steps_c, steps_d = d["clip_steps"], d["dino_steps"]
    common = {"code_version": code_version(), "seed": seed, "data_seed": seed, "images": d["images"],
              "batch": d["batch"], "threads": threads}  # fmt: skip
    t0 = time.time()
    if not train_clip_too:
        return {"dino_knn_accuracy": _dino(dino_dir, seed, steps_d, common, log)}
    clip, _ = train_clip(d["images"], steps_c, seed, batch=d["batch"], log=log)
    save_clip(clip, clip_dir, {})
    r10 = clip_retrieval_at_10(load_world_clip(clip_dir))
    manifest = common | {
        "model": "world CLIP (open_clip custom config)",
        "config": MODEL_CFG,
        "steps": steps_c,
        "loss": "symmetric InfoNCE, class-word captions (never trigger words)",
        "quality": {"clip_retrieval_at_10": r10},
        "train_s": round(time.time() - t0),
    }
    (Path(clip_dir) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log({"stage": "clip-done", "clip_retrieval_at_10": r10})

    return {"clip_retrieval_at_10": r10, "dino_knn_accuracy": _dino(dino_dir, seed, steps_d, common, log)}


def _dino(dino_dir: Path, seed: int, steps_d: int, common: dict, log) -> float:
    d = DEFAULTS
    t1 = time.time()
    dino = train_dino(
        d["images"],
        steps_d,
        seed,
        batch=d["batch"],
        log=log,
        colour=d["dino_colour"],
        p_concept=d["dino_p_concept"],
    )
    # fp32 (1.3 MB): transformers 5 loads weights in their saved dtype unless told otherwise, and generic
    # loaders (lycobench.metric_encoders' dinov2 kind) feed float32 pixels
    dino.float().save_pretrained(str(dino_dir), safe_serialization=True)
    knn_all = dino_knn(load_world_dino(dino_dir))
    knn = knn_all["accuracy"]
    manifest = common | {
        "model": "world DINO-style encoder (transformers Dinov2Model)",
        "config": DINO_CONFIG,
        "steps": steps_d,
        "loss": f"SimCLR NT-Xent on two augmented views, T={TEMPERATURE}",
        "views": {"colour_distortion": d["dino_colour"], "concept_share": d["dino_p_concept"]},
        "feature": "pooler_output",
        "quality": {"dino_knn_accuracy": knn, "dino_knn_by_category": knn_all["by_category"]},
        "train_s": round(time.time() - t1),
    }
    (Path(dino_dir) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log({"stage": "dino-done", "dino_knn_accuracy": knn})
    return knn
