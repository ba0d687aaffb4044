"""Encoder registry and the per-image feature cache.

An encoder maps images (and texts, for CLIP-style models) to feature rows. Features are computed once per
(encoder, image content) and cached as .npy under ``cache/features/<encoder key>/``; recomputing a metric
from the cache gives identical values.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .store import atomic_write_with, content_key

BUILDERS: dict[str, Callable] = {}


def builder(kind: str):
    def register(fn):
        BUILDERS[kind] = fn
        return fn

    return register


class ClipEncoder:
    """An open_clip image-text model with its own preprocessing and tokenizer."""

    def __init__(self, model, preprocess, tokenizer, identity: dict):
        self.model, self.preprocess, self.tokenizer = model.eval(), preprocess, tokenizer
        self.identity = identity
        self.key = content_key(identity)

    @torch.no_grad()
    def encode_images(self, images: list) -> np.ndarray:
        x = torch.stack([self.preprocess(im) for im in images])
        return self.model.encode_image(x).float().numpy()

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_text(self.tokenizer(texts)).float().numpy()


@builder("open_clip_random")
def open_clip_random(cfg: dict) -> ClipEncoder:
    """A seeded random-init open_clip model from a custom config: the offline test fixture."""
    import open_clip

    name = f"lycobench-{content_key(cfg['model_cfg'], 10)}"
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / f"{name}.json").write_text(json.dumps(cfg["model_cfg"]))
        open_clip.add_model_config(d)
        torch.manual_seed(int(cfg["init_seed"]))
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # random init is the point: silence its warning
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
        finally:
            root.setLevel(level)
    return ClipEncoder(model, preprocess, open_clip.get_tokenizer(name), {"clip": cfg})


@builder("open_clip")
def open_clip_pretrained(cfg: dict) -> ClipEncoder:
    """A pretrained open_clip model (the paper's ViT-L-14 DataComp-XL) from a local weights file."""
    import open_clip

    path = cfg.get("path")
    if not path or not Path(path).is_file():
        raise FileNotFoundError(
            f"encoder weights not found: encoders.clip.path={path!r}. lycobench never downloads weights: fetch "
            f"{cfg['model']} / {cfg['pretrained']} (open_clip_pytorch_model.bin or .safetensors) on a machine with network "
            "access and pass encoders.clip.path=/path/to/that/file"
        )
    model, _, preprocess = open_clip.create_model_and_transforms(cfg["model"], pretrained=str(path))
    digest = hashlib.sha256(Path(path).read_bytes()[: 1 << 20]).hexdigest()[
        :16
    ]  # header bytes: cheap identity
    identity = {"clip": {**cfg, "weights_head_sha256": digest, "size": Path(path).stat().st_size}}
    return ClipEncoder(model, preprocess, open_clip.get_tokenizer(cfg["model"]), identity)


def load_clip(encoders_cfg: DictConfig) -> ClipEncoder:
    cfg = OmegaConf.to_container(encoders_cfg.clip, resolve=True)
    if cfg["kind"] not in BUILDERS:
        raise ValueError(f"encoders.clip.kind={cfg['kind']!r}: known kinds are {', '.join(BUILDERS)}")
    return BUILDERS[cfg["kind"]](cfg)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to a temp path
        np.save(fh, array)


def image_features(
    encoder: ClipEncoder, paths: list[Path], cache_dir: Path, batch_size: int = 64
) -> np.ndarray:
    """Features of image files, through the cache keyed by (encoder, image bytes)."""
    from PIL import Image

    folder = Path(cache_dir) / "features" / encoder.key
    keys = [hashlib.sha256(Path(p).read_bytes()).hexdigest()[:32] for p in paths]
    files = [folder / f"{k}.npy" for k in keys]
    todo = [i for i, f in enumerate(files) if not f.is_file()]
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        ims = []
        for i in idx:
            with Image.open(paths[i]) as im:
                ims.append(im.convert("RGB"))
        feats = encoder.encode_images(ims)
        for i, f in zip(idx, feats):
            atomic_write_with(files[i], lambda tmp, f=f: _save_npy(tmp, f))
    return np.stack([np.load(f) for f in files]) if files else np.zeros((0, 0))
