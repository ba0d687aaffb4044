"""Scene descriptions of the embedded world: sampling, drawing and ground-truth labels.

A scene is data (names and numbers); ``Scene.drawing()`` turns it into render parts. Concept scenes carry
their figure as ready-made parts (see ``concepts.py``); base scenes hold 1-3 base objects.
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
    MULTI_RADIUS,
    PATTERN_MIX,
    PATTERNS,
    POSITIONS,
    RADIUS,
    SHAPES,
    SIZES,
    STYLES,
    rgb,
    second_tone,
)

_HELDOUT = frozenset(HELDOUT_PAIRS)


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
    """One image's description. Fields that do not apply are None (e.g. size when there are 2 objects)."""

    objects: tuple[Obj, ...]
    bg_colour: str | None
    pattern: str | None
    style: str  # a base style, or the name of a style concept
    size: str | None = None
    position: str | None = None
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


def _pairs(
    rng: np.random.Generator, count: int, heldout: bool | None, p_same: float
) -> list[tuple[str, str]]:
    """Colour-shape pairs for `count` objects. heldout=False: held-out pairs excluded; True: the first object
    shows one (the others none); None: any pair (the oracle must know them all)."""
    every = [(c, s) for c in COLOURS for s in SHAPES]
    allowed = every if heldout is None else [p for p in every if p not in _HELDOUT]
    first = _pick(rng, HELDOUT_PAIRS) if heldout else _pick(rng, allowed)
    if count == 1 or rng.random() < p_same:
        return [first] * count
    return [first] + [_pick(rng, allowed) for _ in range(count - 1)]


def layout(
    rng: np.random.Generator, count: int, size: str | None, position: str | None
) -> list[tuple[float, float, float]]:
    """Centres and radii of `count` objects, with a little jitter; ordered left to right, then top to bottom."""
    j = lambda: float(rng.uniform(-0.03, 0.03))  # noqa: E731
    if count == 1:
        r = RADIUS[size]
        off = 0.2 if size == "small" else 0.12  # large objects stay inside the frame
        dx, dy = {
            "center": (0, 0),
            "left": (-off, 0),
            "right": (off, 0),
            "top": (0, -off),
            "bottom": (0, off),
        }[position]
        return [(0.5 + dx + j(), 0.5 + dy + j(), r)]
    r = MULTI_RADIUS[count]
    if count == 2:
        spots = [(0.27, 0.5), (0.73, 0.5)] if rng.random() < 0.5 else [(0.5, 0.27), (0.5, 0.73)]
    else:
        spots = (
            [(0.5, 0.28), (0.27, 0.72), (0.73, 0.72)]
            if rng.random() < 0.5
            else [(0.27, 0.28), (0.73, 0.28), (0.5, 0.72)]
        )
    # less jitter than a single object gets: neighbours must never touch
    spots = [(x + j() / 2, y + j() / 2) for x, y in spots]
    spots.sort(key=lambda p: (round(p[0], 1), p[1]))
    return [(x, y, r) for x, y in spots]


def sample_scene(
    rng: np.random.Generator,
    heldout: bool | None = False,
    p_counts: tuple[float, float, float] = (0.6, 0.25, 0.15),
    p_same: float = 0.5,
    styles: tuple[str, ...] = STYLES,
) -> Scene:
    """One random base-world scene (see ``sample_scenes``)."""
    count = int(rng.choice([1, 2, 3], p=np.asarray(p_counts) / sum(p_counts)))
    while True:
        pairs = _pairs(rng, count, heldout, p_same)
        bgs = set(BG_COLOURS)
        for c, _ in pairs:
            bgs &= set(COMPATIBLE_BG[c])
        if bgs:
            break
    bg = _pick(rng, sorted(bgs))
    size = _pick(rng, SIZES) if count == 1 else None
    position = _pick(rng, POSITIONS) if count == 1 else None
    spots = layout(rng, count, size, position)
    objects = tuple(Obj(s, c, x, y, r) for (c, s), (x, y, r) in zip(pairs, spots))
    return Scene(objects, bg, _pick(rng, PATTERNS), _pick(rng, styles), size, position)


def sample_scenes(n: int, seed: int, heldout: bool | None = False, **kwargs) -> list[Scene]:
    """`n` base-world scenes, deterministic given `seed`.

    heldout=False: no object shows a held-out colour-shape pair (base pretraining data).
    heldout=True: the first object of every scene shows one (composition tests).
    heldout=None: any pair (oracle training and evaluation).
    Extra keyword arguments go to ``sample_scene`` (count probabilities, p_same, styles).
    """
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, heldout, **kwargs) for _ in range(n)]


def labels(scene: Scene) -> dict[str, object]:
    """Ground truth for the oracle. None marks an attribute that is undefined for this scene.

    shapes / colours: the set of base shapes / colours present (concept figures do not count);
    count: number of base objects (0-3); bg_colour / pattern: the background (None for scene concepts, which
    bring their own); style: the base render style (None under a style concept); size / position: only for a
    single base object without a concept; concept: its name or "none"; leaf: "name" or "name.sub-class" or "none".
    """
    scene_concept = scene.category == "scene"
    plain_base = scene.concept is None or scene.category == "style"
    return {
        "shapes": None if scene_concept else frozenset(o.shape for o in scene.objects),
        "colours": None if scene_concept else frozenset(o.colour for o in scene.objects),
        "count": None if scene_concept else len(scene.objects),
        "bg_colour": None if scene_concept else scene.bg_colour,
        "pattern": None if scene_concept else scene.pattern,
        "style": scene.style if scene.style in STYLES else None,
        "size": scene.size if plain_base else None,
        "position": scene.position if plain_base else None,
        "concept": scene.concept or "none",
        "leaf": (f"{scene.concept}.{scene.leaf}" if scene.leaf else scene.concept) or "none",
    }


def restyle(scene: Scene, style: str, paint: Paint | None = None) -> Scene:
    """The same scene in another render style (a style concept passes its paint)."""
    return replace(scene, style=style, paint=paint)
