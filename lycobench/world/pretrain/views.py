"""Shared data for the world encoders: unlabelled renders (base scenes and concept scenes) and views.

The metric encoders must know concepts the generator never saw, as CLIP and DINOv2 know dogs and
paintings: they train on base scenes and on concept scenes in wide variation (the oracle's sampler). CLIP
captions name class words only (``toy``, never the trigger ``welm``); DINO-style training uses no labels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..captions import caption
from ..concepts import WorldConcept, concept_caption, load_concepts
from ..oracle import sample_oracle_scenes
from ..scenes import Scene
from .data import render_32


def class_caption(scene: Scene, concepts: dict[str, WorldConcept], rng: np.random.Generator) -> str:
    """A base scene's grammar caption, or a concept scene's caption with the trigger word removed."""
    if scene.concept is None:
        return caption(scene, rng)
    c = concepts[scene.concept]
    return concept_caption(c, scene).replace(f"{c.trigger} ", "", 1)


def encoder_data(n: int, seed: int, p_concept: float = 0.4) -> tuple[list[Scene], np.ndarray]:
    """``n`` scenes (base and concept, seeded) and their 32 px renders."""
    scenes = sample_oracle_scenes(n, seed, load_concepts(), p_concept=p_concept)
    return scenes, render_32(scenes)


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def random_view(
    x: torch.Tensor, g: torch.Generator, min_scale: float = 0.3, colour: bool = False
) -> torch.Tensor:
    """A random crop (scale min_scale..1 of the side, anywhere in the image) resized back, a random
    horizontal flip, a mild per-channel gain and a little noise: one view of each image.

    No blur or resampling: at 32 px they erase hatching and halftone dots, and the encoder would learn to
    ignore texture (style concepts then collapse; measured 0.2-0.5 kNN accuracy on them with blur). Small
    crops of one image show other content in the same paint, so texture is what two views share.
    """
    n = len(x)
    s = min_scale + (1 - min_scale) * torch.rand(n, generator=g)
    tx = (1 - s) * (2 * torch.rand(n, generator=g) - 1)
    ty = (1 - s) * (2 * torch.rand(n, generator=g) - 1)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = s * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = s, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if colour:
        out = colour_distortion(out, g)
    gain = 1 + 0.16 * (torch.rand(n, 3, 1, 1, generator=g) - 0.5)
    noise = 0.03 * torch.rand(n, 1, 1, 1, generator=g) * torch.randn(out.shape, generator=g)
    return (out * gain + noise).clamp(0, 1)


def colour_distortion(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """SimCLR/DINO's colour distortion, per image: hue moved by a random permutation of the channels
    (p 0.8), brightness and contrast x0.6..1.4 (p 0.8), greyscale (p 0.2). Two views then share shape and
    texture, not colour, so the encoder must encode those (with colour alone it matches a hatched square to
    an outlined square of the same colour, not to another hatched object)."""
    n = len(x)
    perms = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
    pick = perms[torch.randint(0, 6, (n,), generator=g)]
    keep = torch.rand(n, generator=g) >= 0.8
    pick[keep] = perms[0]
    x = torch.gather(x, 1, pick.view(n, 3, 1, 1).expand_as(x))
    jitter = torch.rand(n, generator=g) < 0.8
    bright = torch.where(jitter, 0.6 + 0.8 * torch.rand(n, generator=g), 1.0).view(n, 1, 1, 1)
    contrast = torch.where(jitter, 0.6 + 0.8 * torch.rand(n, generator=g), 1.0).view(n, 1, 1, 1)
    x = x * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    grey = (torch.rand(n, generator=g) < 0.2).view(n, 1, 1, 1)
    lum = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).expand_as(x)
    return torch.where(grey, lum, x).clamp(0, 1)
