"""World concepts the base model never sees: characters, objects, scenes and styles, defined in YAML.

Each ``concepts/world/<name>.yaml`` declares a concept descriptor (trigger, class word, optional sub-classes)
and how to draw it: a figure made of parts (characters, objects), a composition with its own backdrop (scenes)
or a paint style applied to base-world content (styles). Rendering is deterministic: image i of a leaf is drawn
from a generator seeded with (concept seed, leaf index, i).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import sdf
from .captions import tags as scene_tags
from .render import Background, Paint, Part
from .scenes import Scene, sample_scene
from .vocab import BG_COLOURS, COLOURS, COMPATIBLE_BG, HELDOUT_PAIRS, PATTERNS, SHAPES, rgb

CATEGORIES = ("character", "object", "scene", "style")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CONCEPT_DIR = Path(__file__).resolve().parents[2] / "concepts" / "world"

FIGURE_SCALE = 0.4  # a figure's half-size (fraction of the image): as large as the base world's objects


@dataclass(frozen=True)
class WorldConcept:
    """One concept: its descriptor and its drawing recipe (the YAML, kept as loaded)."""

    name: str
    category: str
    trigger: str
    class_word: str
    description: str
    seed: int
    subclasses: dict[str, str] = field(default_factory=dict)  # folder -> keyword ('' for an "others" leaf)
    images: dict[str | None, int] = field(default_factory=dict)  # leaf folder (None: no sub-classes) -> count
    spec: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def leaves(self) -> list[str | None]:
        return list(self.subclasses) or [None]

    def descriptor(self, leaf: str | None = None) -> str:
        """The concept descriptor used in captions and prompts: ``<trigger> <class word>[, <keyword>]``."""
        keyword = self.subclasses.get(leaf, "") if leaf else ""
        return f"{self.trigger} {self.class_word}" + (f", {keyword}" if keyword else "")

    def leaf_name(self, leaf: str | None) -> str:
        return f"{self.name}.{leaf}" if leaf else self.name


def _check(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise ValueError(f"{path}: {msg}")


def load_concept(path: Path) -> WorldConcept:
    """Read and validate one concept YAML file."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    _check(isinstance(spec, dict), path, "expected a mapping at the top level")
    for key in ("name", "category", "trigger", "class_word", "seed"):
        _check(key in spec, path, f"missing '{key}'")
    name = str(spec["name"])
    _check(bool(NAME_RE.match(name)), path, f"name {name!r} must match {NAME_RE.pattern}")
    _check(path.stem == name, path, f"file name must be {name}.yaml")
    _check(spec["category"] in CATEGORIES, path, f"category must be one of {', '.join(CATEGORIES)}")
    _check(bool(re.fullmatch(r"[a-z]{3,6}", str(spec["trigger"]))), path, "trigger: 3-6 lowercase letters")
    subs = spec.get("subclasses") or {}
    subclasses = {str(k): str((v or {}).get("keyword", "")) for k, v in subs.items()}
    for k in subclasses:
        _check(bool(NAME_RE.match(k)), path, f"sub-class folder {k!r} must match {NAME_RE.pattern}")
    images = (
        {k: int(v.get("images", 0)) for k, v in subs.items()} if subs else {None: int(spec.get("images", 0))}
    )
    total = sum(images.values())
    _check(5 <= total <= 40, path, f"{total} images; a concept has 5-40")
    _check(all(n >= 1 for n in images.values()), path, "every leaf needs at least one image")
    if spec["category"] in ("character", "object", "scene"):
        _check(bool(spec.get("parts")), path, "characters, objects and scenes need 'parts'")
    if spec["category"] == "style":
        _check(isinstance(spec.get("paint"), dict), path, "styles need a 'paint' mapping")
    subjects = spec.get("subjects") or []
    _check(
        spec["category"] == "style" or not subjects,
        path,
        "only styles take 'subjects' (their images' content)",
    )
    for pair in subjects:
        ok = isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] in COLOURS and pair[1] in SHAPES
        _check(ok and tuple(pair) not in HELDOUT_PAIRS, path, f"subjects: {pair!r} is not a [colour, shape] pair "
               f"of the base world outside the held-out pairs (colours: {', '.join(COLOURS)}; shapes: "
               f"{', '.join(SHAPES)})")  # fmt: skip
    bare = spec.get("bare_captions", 0.0)
    _check(
        isinstance(bare, (int, float)) and not isinstance(bare, bool) and 0.0 <= float(bare) <= 1.0, path,
        f"bare_captions {bare!r}: the share (0-1) of training captions that carry the descriptor alone",
    )  # fmt: skip
    return WorldConcept(
        name=name,
        category=spec["category"],
        trigger=str(spec["trigger"]),
        class_word=str(spec["class_word"]),
        description=str(spec.get("description", "")),
        seed=int(spec["seed"]),
        subclasses=subclasses,
        images=images,
        spec=spec,
    )


@functools.cache
def _load_dir(folder: str) -> dict[str, WorldConcept]:
    concepts = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        c = load_concept(path)
        concepts[c.name] = c
    return concepts


def load_concepts(folder: Path | str | None = None) -> dict[str, WorldConcept]:
    """All world concepts, by name, in name order (default folder: the repository's concepts/world)."""
    folder = Path(folder) if folder is not None else CONCEPT_DIR
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no concept folder at {folder}; pass the folder that holds the world's YAML files"
        )
    return dict(_load_dir(str(folder.resolve())))


def studied_concepts(concepts: dict[str, WorldConcept] | None = None) -> list[str]:
    """The concepts the studies use, one per category (categories sorted): those whose YAML says
    ``studied: true``. The choice is measured, not alphabetical: docs/world-v2.md says why each was picked."""
    concepts = concepts if concepts is not None else load_concepts()
    chosen: dict[str, list[str]] = {}
    for name, c in concepts.items():
        if c.spec.get("studied"):
            chosen.setdefault(c.category, []).append(name)
    wrong = [
        k
        for k in CATEGORIES
        if len(chosen.get(k, [])) != 1 and any(c.category == k for c in concepts.values())
    ]
    if wrong:
        raise ValueError(
            f"world concepts: exactly one concept per category must say 'studied: true' in its YAML; "
            f"not so for {', '.join(wrong)} (now: {', '.join(n for k in wrong for n in chosen.get(k, [])) or 'none'})"
        )
    return [chosen[k][0] for k in sorted(chosen)]


def leaf_names(concepts: dict[str, WorldConcept]) -> list[str]:
    """Every leaf, as the oracle names it: 'name' or 'name.sub-class' (as lycobench.data names leaves)."""
    return [c.leaf_name(leaf) for c in concepts.values() for leaf in c.leaves]


# ---- figures -------------------------------------------------------------------------------------------------


def _colour(value: Any, palette: dict[str, Any]) -> tuple[float, float, float]:
    value = palette.get(value, value) if isinstance(value, str) else value
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        return tuple(int(value[i : i + 2], 16) / 255.0 for i in (1, 3, 5))
    if isinstance(value, str) and value in COLOURS:
        return tuple(float(x) for x in rgb(value))
    if isinstance(value, list | tuple) and len(value) == 3:
        return tuple(float(x) / 255.0 for x in value)
    raise ValueError(f"unknown colour {value!r}: use a palette key, a base colour name or '#rrggbb'")


def _place(
    spec: dict[str, Any], palette: dict[str, Any], patterns: dict[str, Any], cx, cy, s, mirror
) -> Part:
    """One YAML part, from the figure frame ([-1, 1], y down) to image units."""
    m = -1.0 if mirror else 1.0

    def pt(p):
        return (cx + s * m * float(p[0]), cy + s * float(p[1]))

    def ang(deg):  # a mirrored figure turns the other way
        return m * math.radians(float(deg))

    kind = spec["kind"]
    colour = _colour(spec["colour"], palette)
    if kind in ("circle", "heart"):
        (x, y), r = pt(spec["at"]), s * float(spec["r"])
        args, frame = (x, y, r), (x, y, r)
    elif kind == "crescent":
        (x, y), r = pt(spec["at"]), s * float(spec["r"])
        a = math.radians(float(spec.get("angle", -20)))
        args, frame = (x, y, r, math.pi - a if mirror else a), (x, y, r)
    elif kind in ("ellipse", "box", "dome"):
        (x, y), (a, b) = pt(spec["at"]), (s * float(v) for v in spec["size"])
        if kind == "ellipse":
            args = (x, y, a, b, ang(spec.get("angle", 0)))
        elif kind == "box":
            args = (x, y, a, b, ang(spec.get("angle", 0)), s * float(spec.get("round", 0)))
        else:
            args = (x, y, a, b)
        frame = (x, y, max(a, b))
    elif kind == "capsule":
        (ax, ay), (bx, by) = pt(spec["from"]), pt(spec["to"])
        args = (ax, ay, bx, by, s * float(spec["r"]))
        frame = ((ax + bx) / 2, (ay + by) / 2, max(math.hypot(bx - ax, by - ay) / 2, args[4]))
    elif kind in ("poly", "star"):
        if kind == "star":
            c = spec["at"]
            raw = sdf.star_points(
                c[0], c[1], spec["r"], int(spec.get("n", 5)), float(spec.get("inner", 0.45))
            )
        else:
            raw = spec["points"]
        pts = [pt(p) for p in raw]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        args = tuple(v for p in pts for v in p)
        frame = (
            (min(xs) + max(xs)) / 2,
            (min(ys) + max(ys)) / 2,
            max(max(xs) - min(xs), max(ys) - min(ys)) / 2,
        )
        kind = "poly"
    else:
        raise ValueError(f"unknown part kind {kind!r}")
    pattern = None
    pat = patterns.get(spec.get("id")) if spec.get("id") else None
    if pat:
        pattern = (str(pat["kind"]), _colour(pat["colour"], palette), s * float(pat["period"]))
    return Part(kind, tuple(float(v) for v in args), colour, tuple(float(v) for v in frame), pattern)


def figure(
    concept: WorldConcept,
    leaf: str | None,
    cx: float,
    cy: float,
    scale: float,
    mirror: bool = False,
    rng: np.random.Generator | None = None,
) -> tuple[Part, ...]:
    """The concept's parts placed at (cx, cy) with half-size ``scale``; a leaf may recolour or pattern parts."""
    spec = concept.spec
    palette = dict(spec.get("palette") or {})
    patterns: dict[str, Any] = dict(spec.get("patterns") or {})
    hidden: set[str] = set()
    extra: list[dict] = []
    if leaf is not None:
        sub = (spec.get("subclasses") or {}).get(leaf) or {}
        palette.update(sub.get("palette") or {})
        for key, options in (sub.get("palette_choices") or {}).items():
            palette[key] = options[int(rng.integers(len(options)))] if rng is not None else options[0]
        patterns.update(sub.get("patterns") or {})
        hidden.update(sub.get("hide") or [])
        extra = list(sub.get("parts") or [])
    parts = [p for p in spec["parts"] if p.get("id") not in hidden] + extra
    parts.sort(key=lambda p: float(p.get("z", 0)))  # stable: equal z keeps file order
    return tuple(_place(p, palette, patterns, cx, cy, scale, mirror) for p in parts)


# ---- concept scenes ------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _backgrounds(concept: WorldConcept) -> list[str]:
    avoid = set(concept.spec.get("avoid_backgrounds") or [])
    return [b for b in BG_COLOURS if b not in avoid]


def _figure_scene(concept: WorldConcept, leaf: str | None, rng: np.random.Generator, oracle: bool) -> Scene:
    """A character or object, centred and large like the base world's objects, on a base-world background
    (mirrored now and then when the concept allows it). For the oracle its size and place vary more."""
    spec = concept.spec
    pose = spec.get("pose") or {}
    mirror = bool(pose.get("mirror", False)) and rng.random() < 0.5
    spread = 0.08 if oracle else 0.03
    scale = FIGURE_SCALE * float(rng.uniform(1 - 2 * spread, 1 + spread))
    cx, cy = (0.5 + float(rng.uniform(-spread, spread)) for _ in range(2))
    parts = figure(concept, leaf, cx, cy, scale, mirror, rng)
    bg = _pick(rng, _backgrounds(concept))
    pattern = _pick(rng, list(spec.get("patterns", PATTERNS)))
    tags = []
    if pose.get("mirror_tags"):
        tags.append(pose["mirror_tags"][int(mirror)])
    return Scene(
        (), bg, pattern, "flat", concept=concept.name, leaf=leaf, category=concept.category, figure=parts,
        tags=tuple(tags),
    )  # fmt: skip


def _scene_scene(concept: WorldConcept, rng: np.random.Generator, oracle: bool) -> Scene:
    """A fixed composition seen from a few viewpoints, under a few lightings; the concept brings its backdrop."""
    spec = concept.spec
    views = spec.get("views") or {"front view": {"zoom": 1.0, "shift": 0.0}}
    lights = spec.get("lighting") or {"day": {}}
    view_name, light_name = _pick(rng, sorted(views)), _pick(rng, sorted(lights))
    view, light = views[view_name], lights[light_name] or {}
    zoom = float(view.get("zoom", 1.0)) * float(rng.uniform(0.97, 1.03))
    shift = float(view.get("shift", 0.0)) + float(rng.uniform(-0.02, 0.02))
    mirror = bool(spec.get("mirror", False)) and rng.random() < 0.5
    palette = dict(spec.get("palette") or {})
    palette.update(light.get("palette") or {})
    sky = light.get("backdrop") or spec["backdrop"]
    backdrop = Background(_colour(sky["top"], palette), _colour(sky["bottom"], palette), "gradient")
    cy = 0.5 + float(spec.get("anchor_y", 0.0)) * (1 - zoom) * 0.5  # zoom about the ground line, not the sky
    parts = tuple(
        _place(p, palette, spec.get("patterns") or {}, 0.5 + shift, cy, 0.5 * zoom, mirror)
        for p in sorted(spec["parts"], key=lambda p: float(p.get("z", 0)))
    )
    return Scene(
        (), None, None, "flat",
        concept=concept.name, category="scene", figure=parts, backdrop=backdrop, tags=(view_name, light_name),
    )  # fmt: skip


def style_paint(concept: WorldConcept) -> Paint:
    p = dict(concept.spec["paint"])
    if "angle" in p:
        p["angle"] = math.radians(float(p["angle"]))
    return Paint(**p)


def _style_scene(concept: WorldConcept, rng: np.random.Generator, oracle: bool) -> Scene:
    """Base-world content drawn in the concept's paint (held-out colour-shape pairs only for the oracle). A
    style with ``subjects`` shows only those colour-shape pairs in its training images (an artist's usual
    motifs; the background stays free); the oracle learns the paint on any content."""
    base = sample_scene(rng, heldout=None if oracle else False)
    subjects = concept.spec.get("subjects")
    if subjects and not oracle:
        colour, shape = subjects[int(rng.integers(len(subjects)))]
        obj = replace(base.objects[0], colour=colour, shape=shape)
        bg = COMPATIBLE_BG[colour][int(rng.integers(len(COMPATIBLE_BG[colour])))]
        base = replace(base, objects=(obj,), bg_colour=bg)
    return replace(
        base, style=concept.name, paint=style_paint(concept), concept=concept.name, category="style"
    )


def concept_scene(
    concept: WorldConcept, leaf: str | None, rng: np.random.Generator, oracle: bool = False
) -> Scene:
    """One image of a concept leaf. ``oracle=True`` widens the variation (sizes, places, held-out pairs under a
    style) beyond what the concept's training images show, so the oracle recognises the concept in new images."""
    if concept.category in ("character", "object"):
        return _figure_scene(concept, leaf, rng, oracle)
    if concept.category == "scene":
        return _scene_scene(concept, rng, oracle)
    return _style_scene(concept, rng, oracle)


def concept_caption(concept: WorldConcept, scene: Scene, index: int | None = None) -> str:
    """``<trigger> <class word>[, <keyword>], tag, tag, ...`` (the paper's caption format). Training image
    ``index`` (within its leaf) carries the descriptor alone (the paper's "no tags" caption) when the
    concept's ``bare_captions`` share says so: of each leaf's n images, int(share * n), spread evenly."""
    share = float(concept.spec.get("bare_captions", 0.0))
    if index is not None and int((index + 1) * share + 1e-9) > int(index * share + 1e-9):
        return concept.descriptor(scene.leaf)
    if concept.category == "style":
        tags = scene_tags(replace(scene, style="flat"))
    elif concept.category == "scene":
        tags = list(scene.tags)
    else:
        tags = scene_tags(replace(scene, style="flat", objects=())) + list(scene.tags)
        tags += scene_tags(replace(scene, bg_colour=None, pattern=None, style="flat"))
    return ", ".join([concept.descriptor(scene.leaf), *tags])


def training_scenes(concept: WorldConcept) -> list[tuple[str | None, int, Scene]]:
    """The concept's training images as (leaf, index, scene), deterministic."""
    out = []
    for li, leaf in enumerate(concept.leaves):
        for i in range(concept.images[leaf]):
            rng = np.random.default_rng([concept.seed, li, i])
            out.append((leaf, i, concept_scene(concept, leaf, rng)))
    return out
