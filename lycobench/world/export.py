"""Write world concepts as ordinary concept folders (the layout a user brings), and contact sheets of them.

<dir>/<name>/concept.yaml, then <stem>.png + <stem>.txt per image, inside one folder per sub-class when the
concept has sub-classes. Output bytes depend only on the definitions: PNGs carry no timestamps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from .concepts import WorldConcept, concept_caption, load_concepts, training_scenes
from .scenes import render_batch


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png_bytes(image: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def descriptor_yaml(concept: WorldConcept) -> str:
    """The concept.yaml of an exported folder: the descriptor only, no drawing recipe."""
    data: dict = {
        "name": concept.name,
        "category": concept.category,
        "trigger": concept.trigger,
        "class_word": concept.class_word,
    }
    if concept.subclasses:
        data["subclasses"] = dict(concept.subclasses)
    if concept.description:
        data["description"] = concept.description
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def export_concept(concept: WorldConcept, root: Path, size: int = 64) -> Path:
    """Render one concept's training images and captions into ``root/<name>/``."""
    folder = Path(root) / concept.name
    folder.mkdir(parents=True, exist_ok=True)
    items = training_scenes(concept)
    images = render_batch([s for _, _, s in items], size)
    for (leaf, i, scene), image in zip(items, images):
        sub = folder / leaf if leaf else folder
        sub.mkdir(exist_ok=True)
        stem = f"{concept.name}-{i:03d}"
        _write_bytes(sub / f"{stem}.png", _png_bytes(image))
        _write_bytes(sub / f"{stem}.txt", (concept_caption(concept, scene, i) + "\n").encode("utf-8"))
    _write_bytes(folder / "concept.yaml", descriptor_yaml(concept).encode("utf-8"))  # last: marks completion
    return folder


def export(
    root: Path | str, names: list[str] | None = None, size: int = 64, concept_dir: Path | None = None
) -> list[Path]:
    """Export the named concepts (all when None) into ``root``."""
    concepts = load_concepts(concept_dir)
    unknown = sorted(set(names or []) - set(concepts))
    if unknown:
        raise KeyError(f"unknown world concept(s) {', '.join(unknown)}; known: {', '.join(concepts)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return [export_concept(concepts[n], root, size) for n in (names or list(concepts))]


def contact_sheet(root: Path | str, out: Path | str, per_row: int = 12, scale: int = 2) -> Path:
    """One PNG with every exported image, one row per concept leaf, labelled with its descriptor."""
    root = Path(root)
    rows: list[tuple[str, list[Path]]] = []
    for spec in sorted(root.glob("*/concept.yaml")):
        desc = yaml.safe_load(spec.read_text(encoding="utf-8"))
        subs = desc.get("subclasses") or {None: ""}
        for sub, keyword in subs.items():
            folder = spec.parent / sub if sub else spec.parent
            label = f"{desc['name']}{'/' + sub if sub else ''}: {desc['trigger']} {desc['class_word']}"
            label += f", {keyword}" if keyword else ""
            rows.append((label, sorted(folder.glob("*.png"))[:per_row]))
    if not rows:
        raise FileNotFoundError(f"no exported concepts under {root}")
    cell = Image.open(rows[0][1][0]).size[0] * scale
    label_h = 14
    sheet = Image.new("RGB", (per_row * cell, len(rows) * (cell + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, paths) in enumerate(rows):
        y = r * (cell + label_h)
        draw.text((2, y + 1), label, fill="black")
        for c, p in enumerate(paths):
            sheet.paste(
                Image.open(p).convert("RGB").resize((cell, cell), Image.NEAREST), (c * cell, y + label_h)
            )
    out = Path(out)
    sheet.save(out)
    return out


def exported(name: str, size: int = 64) -> Path:
    """The concept folder of world concept ``name``, exported once into a content-addressed cache under
    the user's cache directory (config.user_cache_dir).

    The cache key covers the concept's YAML and the world's code, so an edited concept or renderer gives a
    new folder; training reads only the folder form, as for a user's concept.
    """
    import hashlib
    import shutil
    import tempfile

    from ..config import CONCEPTS_DIR, user_cache_dir

    concepts = load_concepts()
    if name not in concepts:
        raise KeyError(f"unknown world concept {name!r}; known: {', '.join(concepts)}")
    h = hashlib.sha256((CONCEPTS_DIR / "world" / f"{name}.yaml").read_bytes())
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.read_bytes())
    h.update(str(size).encode())
    cache = user_cache_dir() / "world-concepts" / h.hexdigest()[:16]
    folder = cache / name
    if (folder / "concept.yaml").is_file():  # written last by export_concept
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
    export_concept(concepts[name], tmp, size)
    try:
        os.replace(tmp / name, folder)
    except OSError:  # another process exported it first
        if not (folder / "concept.yaml").is_file():
            raise
    shutil.rmtree(tmp, ignore_errors=True)
    return folder
