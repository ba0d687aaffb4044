"""Concepts in folder form, their leaves and captions, and the validation that runs before any compute.

A concept folder holds ``concept.yaml`` (name, category, trigger, class_word, optional subclasses
``{subdir: keyword}``) and images with same-stem ``.txt`` captions, either directly or in one
sub-folder per sub-class. A *leaf* is what the paper evaluates: a concept, or one sub-class of it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import CONCEPTS_DIR

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CONCEPT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CATEGORIES = ("character", "object", "scene", "style")
MIN_SIDE = 16


class InputError(ValueError):
    """Bad input, found before any compute. Lists every problem, each naming the file and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the input:\n  - " + "\n  - ".join(problems))


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
    """A concept is given as a folder path, or as a name under the project's concepts/ folder."""
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


def check_image(path: Path, problems: list[str]) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
            if min(im.size) < MIN_SIDE:
                problems.append(
                    f"{path}: image is {im.size[0]}x{im.size[1]}, below the {MIN_SIDE}-pixel minimum side; remove it"
                )
    except Exception as e:  # PIL raises many types for broken files
        problems.append(f"{path}: unreadable image ({type(e).__name__}: {e}); replace or remove it")


def load_concept(spec: str, problems: list[str]) -> Concept | None:
    root = resolve_concept_path(spec)
    meta_path = root / "concept.yaml"
    if not meta_path.is_file():
        problems.append(f"{meta_path}: missing; write name, category, trigger and class_word")
        return None
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
    missing = [k for k in ("name", "category", "trigger", "class_word") if not meta.get(k)]
    if missing:
        problems.append(f"{meta_path}: missing field(s) {', '.join(missing)}")
        return None
    name = str(meta["name"])
    if not CONCEPT_NAME.match(name):
        problems.append(
            f"{meta_path}: name {name!r} must match {CONCEPT_NAME.pattern} (it becomes a folder name)"
        )
        return None
    if meta["category"] not in CATEGORIES:
        problems.append(f"{meta_path}: category {meta['category']!r} is not one of {', '.join(CATEGORIES)}")
    subclasses = meta.get("subclasses") or {None: ""}
    leaves = []
    for sub, keyword in subclasses.items():
        folder = root if sub is None else root / str(sub)
        if sub is not None and (not CONCEPT_NAME.match(str(sub)) or not folder.is_dir()):
            problems.append(f"{meta_path}: sub-class {sub!r} needs a folder {folder} with a safe name")
            continue
        leaf = Leaf(name, meta["category"], meta["trigger"], meta["class_word"], sub, keyword or "")
        for img in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS):
            check_image(img, problems)
            caption = read_caption(img.with_suffix(".txt"), problems)
            if caption is None:
                continue
            if leaf.trigger not in caption.split(",")[0].split():
                problems.append(
                    f"{img.with_suffix('.txt')}: caption does not start with the trigger word {leaf.trigger!r}"
                )
            leaf.items.append(Item(img, caption))
        if not leaf.items:
            problems.append(f"{folder}: no images with captions; add images (.png/.jpg) and .txt captions")
        leaves.append(leaf)
    return Concept(name, meta["category"], meta["trigger"], meta["class_word"], root, leaves)


def load_concepts(specs: list[str]) -> list[Concept]:
    """Load and validate every concept; raise one InputError listing all problems."""
    problems: list[str] = []
    concepts = []
    for spec in specs:
        try:
            c = load_concept(spec, problems)
        except InputError as e:
            problems.extend(e.problems)
            continue
        if c is not None:
            concepts.append(c)
    names = [c.name for c in concepts]
    for dup in {n for n in names if names.count(n) > 1}:
        problems.append(f"concept name {dup!r} is used by more than one folder; names must be unique")
    if problems:
        raise InputError(problems)
    return concepts


def all_leaves(concepts: list[Concept]) -> list[Leaf]:
    return [leaf for c in concepts for leaf in c.leaves]
