"""Random multi-part figures: generic content for the VAE only, never a concept.

A VAE trained on base scenes alone learns that an object is one colour: it turned the world's multi-coloured
concept figures into one-colour blobs (the oracle recognised 15-50% of concept images after a round trip,
100% before). Stable Diffusion's VAE is a generic image codec trained on everything; this is the world's
analogue: each figure is 3-8 random primitives (boxes, circles, capsules, ellipses) in random colours,
stacked around a random centre on a base-world background. Every figure is freshly random, so none is a
concept; the UNet and the text encoder still see base scenes only.
"""

from __future__ import annotations

import numpy as np

from ..render import Part
from ..scenes import Obj, Scene
from ..vocab import BG_COLOURS, COLOURS, PATTERNS, SHAPES, STYLES

KINDS = ("box", "circle", "capsule", "ellipse")


def _part(rng: np.random.Generator, cx: float, cy: float, s: float) -> Part:
    """One random primitive inside the figure's box (centre cx, cy; half-size s), in a random colour."""
    colour = tuple(float(v) for v in rng.uniform(0.0, 1.0, 3))
    x, y = cx + s * float(rng.uniform(-0.8, 0.8)), cy + s * float(rng.uniform(-0.9, 0.9))
    kind = KINDS[int(rng.integers(len(KINDS)))]
    a, b = s * float(rng.uniform(0.08, 0.45)), s * float(rng.uniform(0.08, 0.45))
    if kind == "box":
        args = (x, y, a, b, float(rng.uniform(-0.3, 0.3)), min(a, b) * float(rng.uniform(0, 0.5)))
    elif kind == "circle":
        args = (x, y, a)
    elif kind == "capsule":
        dx, dy = s * float(rng.uniform(-0.5, 0.5)), s * float(rng.uniform(-0.5, 0.5))
        args = (x - dx, y - dy, x + dx, y + dy, min(a, b) * 0.5)
    else:
        args = (x, y, a, b, float(rng.uniform(-1.5, 1.5)))
    return Part(kind, args, colour, (x, y, max(a, b)))


def random_figure_scene(rng: np.random.Generator) -> Scene:
    """A random figure on a base background, in a base style, sometimes beside one base object."""
    s = float(rng.uniform(0.22, 0.42))
    cx, cy = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.4, 0.6))
    parts = tuple(_part(rng, cx, cy, s) for _ in range(int(rng.integers(3, 9))))
    objects: tuple[Obj, ...] = ()
    if rng.random() < 0.3:
        ox = 0.18 if cx > 0.5 else 0.82
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        objects = (
            Obj(SHAPES[int(rng.integers(len(SHAPES)))], colour, ox, float(rng.uniform(0.3, 0.7)), 0.14),
        )
    bg = list(BG_COLOURS)[int(rng.integers(len(BG_COLOURS)))]
    pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    style = STYLES[int(rng.integers(len(STYLES)))] if rng.random() < 0.4 else "flat"
    return Scene(objects, bg, pattern, style, figure=parts)


def random_figure_scenes(n: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [random_figure_scene(rng) for _ in range(n)]
