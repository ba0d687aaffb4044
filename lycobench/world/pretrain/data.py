"""Training data of the world's base model: renders of base scenes with fresh captions.

Only ``sample_scenes(..., heldout=False)`` scenes are used: no concept is ever drawn and no held-out
colour-shape pair appears, so concepts and composition stay unseen until fine-tuning and the check.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..captions import caption, tags
from ..scenes import Scene, render_batch, sample_scenes

RESOLUTION = 32  # the generator's image side (the oracle reads 32 px too)
RENDER = 64  # rendered at 64 px (2x supersampled), then area-averaged to 32 px like the oracle's input


def render_32(scenes: list[Scene], chunk: int = 2000) -> np.ndarray:
    """uint8 [N,32,32,3]: rendered at 64 px and area-downsampled (sharper than rendering at 32)."""
    out = []
    for i in range(0, len(scenes), chunk):
        x = torch.from_numpy(render_batch(scenes[i : i + chunk], RENDER)).permute(0, 3, 1, 2).float()
        x = F.avg_pool2d(x, RENDER // RESOLUTION)
        out.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [-1, 1] (the VAE's range)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def partial_caption(scene: Scene, rng: np.random.Generator) -> str:
    """The scene's tags with some left out (at least one kept, at least one dropped): a caption that does
    not name everything, so that what it leaves out is free (drawn from the noise, not from one mode)."""
    all_tags = tags(scene, lambda options: options[int(rng.integers(len(options)))])
    while True:
        keep = rng.random(len(all_tags)) < 0.5
        if 0 < keep.sum() < len(all_tags):
            return ", ".join(t for t, k in zip(all_tags, keep, strict=True) if k)


class WorldData:
    """``n`` base scenes (seeded), their 32 px renders, and a seeded caption stream; a ``partial`` share of
    the captions leaves some of the scene's tags out (``partial_caption``)."""

    def __init__(self, n: int, seed: int, partial: float = 0.0):
        self.seed, self.partial = seed, partial
        self.scenes = sample_scenes(n, seed, heldout=False)
        self.images = render_32(self.scenes)

    def captions(self, index: list[int], rng: np.random.Generator) -> list[str]:
        """A freshly drawn caption per scene: the grammar's phrasings vary from step to step."""
        if not self.partial:  # no extra draws: the caption stream of runs without partial captions
            return [caption(self.scenes[i], rng) for i in index]
        return [
            partial_caption(self.scenes[i], rng)
            if rng.random() < self.partial
            else caption(self.scenes[i], rng)
            for i in index
        ]
