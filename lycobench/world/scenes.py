"""Scene descriptions of the embedded world: sampling, drawing and ground-truth labels.

A scene is data (names and numbers); ``Scene.drawing()`` turns it into render parts. Concept scenes carry
their figure as ready-made parts (see ``concepts.py``); base scenes hold one base object.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .render import BASE_PAINTS, Background, Drawing, Paint, Part, render_drawings
from .vocab import (
    BG_COLOURS,
    COLOURS,
    COMPATIBLE_BG,
    GRADIENT_MIX,
    HELDOUT_PAIRS,
    PATTERN_MIX,
    PATTERNS,
    RADIUS,
    SHAPES,
    rgb,
    second_tone,
)

_HELDOUT = frozenset(HELDOUT_PAIRS)
JITTER = 0.03  # how far (image units) an object's centre may stray from the middle


@dataclass(frozen=True)
class Obj:
    """A base-world object: a shape in a colour, centred at (cx, cy) with radius r (image units)."""

    shape: str
    colour: str
    cx: float
    cy: float
    r: float

    def part(self) -> Part:
        return Part(
            f"shape:{self.shape}",
            (self.cx, self.cy, self.r, 1.0),
            tuple(rgb(self.colour)),
            (self.cx, self.cy, self.r),
        )


@dataclass(frozen=True)
class Scene:
    """One image's description. Fields that do not apply are None (e.g. the background of a scene concept,
    which brings its own backdrop)."""

    objects: tuple[Obj, ...]
    bg_colour: str | None
    pattern: str | None
    style: str  # "flat" (the base style), or the name of a style concept
    paint: Paint | None = None  # None: the base style's paint
    concept: str | None = None  # concept name, when a concept is present
    leaf: str | None = None  # the concept's sub-class folder, when it has sub-classes
    category: str | None = None  # the concept's category
    figure: tuple[Part, ...] = ()  # the concept's parts (character, object or scene), drawn before objects
    backdrop: Background | None = None  # a scene concept's own background
    tags: tuple[str, ...] = ()  # caption tags the concept adds (pose, view, lighting)

    def drawing(self) -> Drawing:
        if self.backdrop is not None:
            bg = self.backdrop
        else:
            c1 = rgb(self.bg_colour, BG_COLOURS)
            mix = GRADIENT_MIX if self.pattern == "gradient" else PATTERN_MIX
            bg = Background(tuple(c1), tuple(second_tone(c1, mix)), self.pattern)
        paint = self.paint if self.paint is not None else BASE_PAINTS[self.style]
        return Drawing(bg, self.figure + tuple(o.part() for o in self.objects), paint)


def render_batch(scenes: list[Scene], size: int = 64, supersample: int = 2) -> np.ndarray:
    """Render scenes to uint8 RGB images [N, size, size, 3]; deterministic (pure numpy, no randomness)."""
    return render_drawings([s.drawing() for s in scenes], size, supersample)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _pair(rng: np.random.Generator, heldout: bool | None) -> tuple[str, str]:
    """A colour-shape pair. heldout=False: held-out pairs excluded; True: a held-out pair; None: any pair
    (the oracle must know them all)."""
    if heldout:
        return _pick(rng, HELDOUT_PAIRS)
    every = [(c, s) for c in COLOURS for s in SHAPES]
    return _pick(rng, every if heldout is None else [p for p in every if p not in _HELDOUT])


def sample_scene(rng: np.random.Generator, heldout: bool | None = False) -> Scene:
    """One random base-world scene: one large object, centred with a little jitter (see ``sample_scenes``)."""
    colour, shape = _pair(rng, heldout)
    bg = _pick(rng, COMPATIBLE_BG[colour])
    x, y = (0.5 + float(rng.uniform(-JITTER, JITTER)) for _ in range(2))
    return Scene((Obj(shape, colour, x, y, RADIUS),), bg, _pick(rng, PATTERNS), "flat")


def sample_scenes(n: int, seed: int, heldout: bool | None = False) -> list[Scene]:
    """`n` base-world scenes, deterministic given `seed`.

    heldout=False: no object shows a held-out colour-shape pair (base pretraining data).
    heldout=True: every object shows one (composition tests).
    heldout=None: any pair (oracle training and evaluation).
    """
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, heldout) for _ in range(n)]


NEAR_MISS = "near-miss"  # Scene.category of the oracle's negatives (world/oracle_train.py)


def labels(scene: Scene) -> dict[str, object]:
    """Ground truth for the oracle. None marks an attribute that is undefined for this scene.

    shapes / colours: the set of base shapes / colours present (concept figures do not count);
    count: number of base objects (0 or 1); bg_colour / pattern: the background (None for scene concepts,
    which bring their own); concept: its name or "none"; leaf: "name" or "name.sub-class" or "none".
    A near miss (category ``NEAR_MISS``: a concept figure taken apart, an oracle negative) has no concept,
    and its base-object heads are undefined.
    """
    scene_concept = scene.category == "scene"
    no_objects = (
        scene_concept or scene.category == NEAR_MISS
    )  # a scattered figure's parts are no base objects
    return {
        "shapes": None if no_objects else frozenset(o.shape for o in scene.objects),
        "colours": None if no_objects else frozenset(o.colour for o in scene.objects),
        "count": None if no_objects else len(scene.objects),
        "bg_colour": None if scene_concept else scene.bg_colour,
        "pattern": None if scene_concept else scene.pattern,
        "concept": scene.concept or "none",
        "leaf": (f"{scene.concept}.{scene.leaf}" if scene.leaf else scene.concept) or "none",
    }


def restyle(scene: Scene, style: str, paint: Paint | None = None) -> Scene:
    """The same scene in another render style (a style concept passes its paint)."""
    return replace(scene, style=style, paint=paint)
