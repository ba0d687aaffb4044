"""The embedded world: a procedural renderer with captions, concepts the base model never sees, and an oracle.

Public entry points for the other stages:

- ``sample_scenes(n, seed, heldout=False)`` -> scenes; ``render_batch(scenes, size)`` -> uint8 [N,H,W,3];
  ``caption(scene, rng)``; ``labels(scene)`` (ground truth); ``HELDOUT_PAIRS`` (colour, shape) pairs that base
  pretraining never shows
- ``load_concepts()``, ``export(dir)``: world concepts as ordinary concept folders
- ``Oracle.load().predict(images)``: attributes read back from images
"""

from .captions import all_captions, caption
from .concepts import WorldConcept, load_concepts
from .export import export  # bound here, eagerly: a lazy wrapper lost to the submodule of the same name
from .scenes import Obj, Scene, labels, render_batch, sample_scenes
from .vocab import BG_COLOURS, COLOURS, HELDOUT_PAIRS, PATTERNS, SHAPES, STYLES

__all__ = [
    "BG_COLOURS",
    "COLOURS",
    "HELDOUT_PAIRS",
    "PATTERNS",
    "SHAPES",
    "STYLES",
    "WorldConcept",
    "Obj",
    "Scene",
    "all_captions",
    "caption",
    "export",
    "labels",
    "load_concepts",
    "render_batch",
    "sample_scenes",
]
