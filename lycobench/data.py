"""Concepts in folder form, their leaves and captions, and the validation that runs before any compute.

A concept folder holds ``concept.yaml`` (name, category, trigger, class_word, optional subclasses
``{subdir: keyword}``) and images with same-stem ``.txt`` captions, either directly or in one
sub-folder per sub-class. A *leaf* is what the paper evaluates: a concept, or one sub-class of it.

Validation looks at everything before the first training step and reports every problem in one pass,
each naming its file and the fix. Problems stop the run; warnings (odd but usable input) and notes
(conversions applied by the image policy below) are reported and the run goes on.

Image policy (``to_rgb``): the EXIF orientation is applied; transparency (RGBA, LA, PA, P with a
transparent colour) is composited on white; 16-bit and 32-bit greyscale is scaled to 8 bits
(65535 -> 255); every other mode (L, 1, P, CMYK, YCbCr, ...) is converted by PIL. The file's content
decides its format, not its extension.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import CONCEPTS_DIR

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FORMAT_OF_EXT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}
CONCEPT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Names Windows refuses as file names, whatever the extension.
RESERVED_NAMES = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}
CATEGORIES = ("character", "object", "scene", "style")
MIN_SIDE = 16
MAX_ASPECT = 3.0  # training centre-crops a square: beyond 3:1 it keeps less than a third of the image
IMAGE_POLICY = "rgb-v1: exif transpose; alpha on white; 16-bit scaled to 8-bit; other modes by PIL"

log = logging.getLogger("lycobench")


class InputError(ValueError):
    """Bad input, found before any compute. Lists every problem, each naming the file and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the input:\n  - " + "\n  - ".join(problems))


@dataclass
class Report:
    """What validation found: problems stop a run, warnings and notes do not."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_images: int = 0


@dataclass(frozen=True)
class Item:
    image: Path
    caption: str


@dataclass
class Leaf:
    concept: str
    category: str
    trigger: str
    class_word: str
    subclass: str | None  # sub-folder name, None for a concept without sub-classes
    keyword: str  # sub-class keyword ('' when none)
    items: list[Item] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.concept if self.subclass is None else f"{self.concept}.{self.subclass}"

    @property
    def descriptor(self) -> str:
        """The full concept descriptor used in prompts: trigger + class word [+ ', ' keyword]."""
        base = f"{self.trigger} {self.class_word}"
        return f"{base}, {self.keyword}" if self.keyword else base


@dataclass
class Concept:
    name: str
    category: str
    trigger: str
    class_word: str
    root: Path
    leaves: list[Leaf]

    @property
    def n_images(self) -> int:
        return sum(len(leaf.items) for leaf in self.leaves)


def resolve_concept_path(spec: str) -> Path:
    """A concept is a folder path, a name under the project's concepts/ folder, or ``world:<name>``
    (a concept of the embedded world, exported once to its folder form)."""
    if spec.startswith("world:"):
        from .world.export import exported

        try:
            return exported(spec.removeprefix("world:"))
        except KeyError as e:
            raise InputError([f"concept {spec!r}: {e.args[0]}"]) from None
    p = Path(spec).expanduser()
    if p.is_dir():
        return p.resolve()
    q = CONCEPTS_DIR / spec
    if q.is_dir():
        return q.resolve()
    raise InputError(
        [
            f"concept {spec!r}: no such folder (looked at {p.resolve()} and {q}); give a path to a concept folder"
        ]
    )


def safe_folder_name(name: str) -> bool:
    """Names that become folders of the results: lowercase, no separators, no '..', no device names."""
    return bool(CONCEPT_NAME.match(name)) and name.split(".")[0] not in RESERVED_NAMES


# --- images --------------------------------------------------------------------------------------


def to_rgb(im):
    """The image policy (module docstring): any PIL image -> an 8-bit RGB image, upright."""
    import numpy as np
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if arr.max(initial=0) > 255:  # 16-bit data (PNG greyscale-16 opens as I;16 or I)
            arr = arr / 257.0
        im = Image.fromarray(np.clip(arr.round(), 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im.convert("RGB")


def inspect_image(path: Path, report: Report) -> str | None:
    """Check one image; returns the hash of its pixels after the policy (None if unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
        with Image.open(path) as im:
            im.load()
            mode, orientation = im.mode, im.getexif().get(0x0112, 1)
            rgb = to_rgb(im)
    except Exception as e:  # PIL raises many types for broken files
        report.problems.append(f"{path}: unreadable image ({type(e).__name__}: {e}); replace or remove it")
        return None
    expected = FORMAT_OF_EXT[path.suffix.lower()]
    if fmt != expected:
        report.warnings.append(
            f"{path}: holds {fmt} data under a {path.suffix} name; it is read as {fmt} "
            f"(rename it to silence this)"
        )
    if mode != "RGB":
        how = "alpha composited on white" if "A" in mode or mode == "P" else "converted"
        report.notes.append(f"{path}: {mode} image -> RGB ({how})")
    if orientation not in (1, None):
        report.notes.append(f"{path}: EXIF orientation {orientation} applied (image rotated upright)")
    w, h = rgb.size
    if min(w, h) < MIN_SIDE:
        report.problems.append(
            f"{path}: image is {w}x{h}, below the {MIN_SIDE}-pixel minimum side; remove it or use a larger one"
        )
    elif max(w, h) / min(w, h) > MAX_ASPECT:
        report.warnings.append(
            f"{path}: aspect ratio {max(w, h) / min(w, h):.1f}:1; training centre-crops a square and keeps "
            f"only {min(w, h) / max(w, h):.0%} of it (crop the image to the subject)"
        )
    return hashlib.sha256(f"{w}x{h}:".encode() + rgb.tobytes()).hexdigest()


def read_caption(path: Path, problems: list[str]) -> str | None:
    """UTF-8 (BOM stripped), NFC-normalised, one line. Reports instead of raising."""
    if not path.is_file():
        problems.append(
            f"{path.with_suffix('')}.*: image without caption: write {path.name} (one UTF-8 line)"
        )
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problems.append(
            f"{path}: not UTF-8 (byte {raw[e.start]:#x} at offset {e.start}); re-save the caption as UTF-8"
        )
        return None
    text = unicodedata.normalize("NFC", " ".join(text.split()))
    if not text:
        problems.append(f"{path}: empty caption; write '<trigger> <class word>, tag, ...'")
        return None
    return text


def _escapes(path: Path, root: Path) -> bool:
    """A symlink (or a path through one) that leads outside the concept folder."""
    return not path.resolve().is_relative_to(root)


# --- concepts ------------------------------------------------------------------------------------


def _read_meta(root: Path, report: Report) -> dict | None:
    meta_path = root / "concept.yaml"
    if not meta_path.is_file():
        report.problems.append(f"{meta_path}: missing; write name, category, trigger and class_word")
        return None
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        report.problems.append(f"{meta_path}: not valid UTF-8 YAML ({type(e).__name__}: {e}); fix the file")
        return None
    if not isinstance(meta, dict):
        report.problems.append(f"{meta_path}: must be a mapping of name, category, trigger, class_word")
        return None
    missing = [k for k in ("name", "category", "trigger", "class_word") if not meta.get(k)]
    if missing:
        report.problems.append(f"{meta_path}: missing field(s) {', '.join(missing)}")
        return None
    ok = True
    name = str(meta["name"])
    if not safe_folder_name(name):
        report.problems.append(
            f"{meta_path}: name {name!r} must match {CONCEPT_NAME.pattern} and not be a device name such as "
            "'con' (it becomes a folder name)"
        )
        ok = False
    if meta["category"] not in CATEGORIES:
        report.problems.append(
            f"{meta_path}: category {meta['category']!r} is not one of {', '.join(CATEGORIES)}"
        )
    trigger = str(meta["trigger"])
    if len(trigger.split()) != 1 or "," in trigger:
        report.problems.append(f"{meta_path}: trigger {trigger!r} must be one word without commas")
        ok = False
    subclasses = meta.get("subclasses")
    if subclasses is not None and not isinstance(subclasses, dict):
        report.problems.append(f"{meta_path}: subclasses must map sub-folder names to keywords")
        ok = False
    return meta if ok else None


def _leaf_items(leaf: Leaf, folder: Path, root: Path, report: Report, seen: dict[str, Path]) -> None:
    """Fill ``leaf.items`` from ``folder``; report every bad image, caption, link and stray file."""
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name == "concept.yaml" or p.is_dir():
            continue
        if _escapes(p, root):
            report.problems.append(
                f"{p}: symlink leads outside the concept folder ({p.resolve()}); copy the file in instead"
            )
            continue
        suffix = p.suffix.lower()
        if suffix == ".txt":
            if not any(
                p.with_suffix(ext).is_file() for ext in (*IMAGE_EXTS, *(e.upper() for e in IMAGE_EXTS))
            ):
                report.warnings.append(f"{p}: caption without an image; it is ignored")
            continue
        if suffix not in IMAGE_EXTS:
            report.warnings.append(f"{p}: ignored: not an image ({' '.join(IMAGE_EXTS)}) nor a .txt caption")
            continue
        report.n_images += 1
        digest = inspect_image(p, report)
        caption = read_caption(p.with_suffix(".txt"), report.problems)
        if digest is not None:
            if digest in seen:
                report.problems.append(
                    f"{p}: same pixels as {seen[digest]}; remove one (a duplicate counts twice in training)"
                )
                continue
            seen[digest] = p
        if caption is None or digest is None:
            continue
        if leaf.trigger not in caption.split(",")[0].split():
            report.problems.append(
                f"{p.with_suffix('.txt')}: caption does not start with the trigger word {leaf.trigger!r}; "
                f"begin it with '{leaf.descriptor}'"
            )
            continue
        leaf.items.append(Item(p, caption))


def load_concept(spec: str, report: Report, seen: dict[str, Path] | None = None) -> Concept | None:
    """Read one concept folder, adding whatever is wrong to ``report``."""
    seen = {} if seen is None else seen
    root = resolve_concept_path(spec)
    meta = _read_meta(root, report)
    if meta is None:
        return None
    name, category = str(meta["name"]), meta["category"]
    trigger, class_word = str(meta["trigger"]), str(meta["class_word"])
    subclasses = meta.get("subclasses") or {None: ""}
    leaves = []
    for sub, keyword in subclasses.items():
        folder = root if sub is None else root / str(sub)
        if sub is not None and (not safe_folder_name(str(sub)) or not folder.is_dir()):
            report.problems.append(
                f"{root / 'concept.yaml'}: sub-class {sub!r} needs a folder {folder} with a safe name "
                f"({CONCEPT_NAME.pattern})"
            )
            continue
        if _escapes(folder, root):
            report.problems.append(f"{folder}: symlink leads outside the concept folder; copy the folder in")
            continue
        leaf = Leaf(name, category, trigger, class_word, sub, str(keyword or ""))
        _leaf_items(leaf, folder, root, report, seen)
        if not leaf.items:
            report.problems.append(
                f"{folder}: no usable images with captions; add images (.png/.jpg) and .txt captions"
            )
        leaves.append(leaf)
    declared = {str(s) for s in subclasses if s is not None}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if d.name not in declared:
            report.warnings.append(
                f"{d}: sub-folder not declared under subclasses in concept.yaml; it is ignored"
            )
    if declared:
        stray = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTS]
        if stray:
            report.warnings.append(
                f"{root}: {len(stray)} image(s) beside the sub-class folders are ignored (e.g. {stray[0].name}); "
                "move them into a sub-class folder"
            )
    return Concept(name, category, trigger, class_word, root, leaves)


def check_concepts(specs: list[str]) -> tuple[list[Concept], Report]:
    """Load every concept and collect every problem, warning and note, without raising."""
    report = Report()
    concepts, seen = [], {}
    for spec in specs:
        try:
            c = load_concept(spec, report, seen)
        except InputError as e:
            report.problems.extend(e.problems)
            continue
        if c is not None:
            concepts.append(c)
    names = [c.name for c in concepts]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        report.problems.append(f"concept name {dup!r} is used by more than one folder; names must be unique")
    triggers = [c.trigger for c in concepts]
    for dup in sorted({t for t in triggers if triggers.count(t) > 1}):
        report.problems.append(
            f"trigger {dup!r} is used by more than one concept; one model learns them all, give each its own"
        )
    return concepts, report


def load_concepts(specs: list[str]) -> list[Concept]:
    """Load and validate every concept; raise one InputError listing all problems. Warnings are logged."""
    concepts, report = check_concepts(specs)
    if report.problems:
        raise InputError(report.problems)
    for w in report.warnings:
        log.warning("%s", w)
    return concepts


def all_leaves(concepts: list[Concept]) -> list[Leaf]:
    return [leaf for c in concepts for leaf in c.leaves]
