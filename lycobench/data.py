"""Concepts in folder form, their leaves and captions, and the validation that runs before any compute.

A concept folder holds ``concept.yaml`` (name, category, trigger, class_word, optional subclasses
``{subdir: keyword}``) and images with same-stem ``.txt`` captions, either directly or in one
sub-folder per sub-class. A *leaf* is what the paper evaluates: a concept, or one sub-class of it.

Validation looks at everything before the first training step and reports every problem in one pass,
each naming its file and the fix. Problems stop the run; warnings (odd but usable input) and notes
(conversions applied by the image policy below) are reported and the run goes on.

A broken or incomplete ``concept.yaml`` does not hide the rest: the images and captions are checked
whatever it says (the trigger-word check needs a valid trigger; sub-folders are taken as sub-classes
when the file cannot say), and every problem is one line. How images are read: lycobench.image_policy.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import CONCEPTS_DIR
from .image_policy import IMAGE_EXTS, inspect_image

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
# concept.yaml's fields, each with the line that fixes its absence
FIELDS = {
    "name": "name: my-dog  (lowercase letters, digits, '-', '_': it becomes a folder name)",
    "category": f"category: object  (one of {', '.join(CATEGORIES)})",
    "trigger": "trigger: zqx  (one rare word; every caption starts with it)",
    "class_word": "class_word: dog  (the class noun that follows the trigger in the captions)",
}
OPTIONAL_FIELDS = ("subclasses", "description")

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
class ConceptFolder:
    """A concept read from its folder (concept.yaml, images, captions), as training and prompts use it;
    lycobench.world.concepts.WorldConcept is the world's drawing recipe of a concept, exported to this form."""

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


# --- captions ------------------------------------------------------------------------------------


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


def _read_meta(root: Path, report: Report) -> tuple[dict, bool]:
    """The fields of ``concept.yaml`` that are valid, and whether all of them are (only then is a concept
    built). ``subclasses`` is in the fields only when the file says (an empty mapping: none)."""
    meta_path = root / "concept.yaml"
    template = "; ".join(FIELDS.values())
    if not meta_path.is_file():
        report.problems.append(f"{meta_path}: missing; write it with one line per field: {template}")
        return {}, False
    try:
        raw = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        report.problems.append(
            f"{meta_path}: not UTF-8 (byte {e.object[e.start]:#x} at offset {e.start}); re-save it as UTF-8"
        )
        return {}, False
    except yaml.YAMLError as e:
        report.problems.append(yaml_problem(meta_path, e))
        return {}, False
    if not isinstance(raw, dict):
        got = "empty" if raw is None else f"a {type(raw).__name__}"
        report.problems.append(f"{meta_path}: is {got}, not a mapping; write one line per field: {template}")
        return {}, False
    fields, ok = {}, True
    for key, fix in FIELDS.items():
        if raw.get(key) in (None, ""):
            report.problems.append(f"{meta_path}: field {key!r} missing; add the line  {fix}")
            ok = False
    unknown = sorted(str(k) for k in raw if k not in FIELDS and k not in OPTIONAL_FIELDS)
    if unknown:
        known = ", ".join([*FIELDS, *OPTIONAL_FIELDS])
        report.warnings.append(
            f"{meta_path}: unknown field(s) {', '.join(unknown)} ignored (the fields: {known})"
        )
    name = raw.get("name")
    if name not in (None, "") and not safe_folder_name(str(name)):
        report.problems.append(
            f"{meta_path}: name {str(name)!r} must match {CONCEPT_NAME.pattern} and not be a device name such "
            "as 'con' (it becomes a folder name); rename it"
        )
        ok = False
    category = raw.get("category")
    if category not in (None, "") and category not in CATEGORIES:
        report.problems.append(
            f"{meta_path}: category {category!r} is not one of {', '.join(CATEGORIES)}; pick one"
        )
        ok = False
    trigger = raw.get("trigger")
    if trigger not in (None, ""):
        if len(str(trigger).split()) != 1 or "," in str(trigger):
            report.problems.append(
                f"{meta_path}: trigger {str(trigger)!r} must be one word without commas; pick one rare word"
            )
            ok = False
        else:
            fields["trigger"] = str(trigger)
    subclasses = raw.get("subclasses")
    if subclasses is not None and not isinstance(subclasses, dict):
        report.problems.append(
            f"{meta_path}: subclasses must map sub-folder names to keywords (subclasses: {{red: red outfit}})"
        )
        ok = False
    else:
        fields["subclasses"] = subclasses or {}
    for key in ("name", "category", "class_word"):
        if raw.get(key) not in (None, ""):
            fields[key] = str(raw[key])
    return fields, ok


def yaml_problem(path: Path, e: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: the file, its line and column, what is wrong and the fix."""
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x)
    what = " ".join((what or str(e)).split())
    return (
        f"{where}: not valid YAML ({what}); fix the syntax at that line "
        "(quote a value that holds ': ', ' #', or starts with a special character)"
    )


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
        digest, findings = inspect_image(p)
        for kind, line in findings:
            getattr(report, f"{kind}s").append(line)
        caption = read_caption(p.with_suffix(".txt"), report.problems)
        if digest is not None:
            if digest in seen:
                report.problems.append(
                    f"{p}: same pixels as {seen[digest]}; remove one (a duplicate counts twice in training)"
                )
                continue
            seen[digest] = p
        if caption is None or digest is None or any(kind == "problem" for kind, _ in findings):
            continue
        if leaf.trigger and caption.split()[0].rstrip(",") != leaf.trigger:  # prompts are built on that
            report.problems.append(
                f"{p.with_suffix('.txt')}: caption does not start with the trigger word {leaf.trigger!r}; "
                f"begin it with '{leaf.descriptor}'"
            )
            continue
        leaf.items.append(Item(p, caption))


def load_concept(spec: str, report: Report, seen: dict[str, Path] | None = None) -> ConceptFolder | None:
    """Read one concept folder, adding whatever is wrong to ``report``; None when ``concept.yaml`` is
    missing or wrong (its images and captions are checked all the same)."""
    seen = {} if seen is None else seen
    root = resolve_concept_path(spec)
    meta, ok = _read_meta(root, report)
    name, category = meta.get("name", root.name), meta.get("category", "")
    trigger, class_word = meta.get("trigger", ""), meta.get("class_word", "")
    subclasses = meta.get("subclasses")
    declared = subclasses is not None
    if not declared:  # concept.yaml cannot say: check every folder that holds images
        subclasses = {d.name: "" for d in _subfolders(root) if _holds_images(d)}
        if not subclasses or _holds_images(root):
            subclasses = {None: "", **subclasses}
    leaves = []
    for sub, keyword in (subclasses or {None: ""}).items():
        folder = root if sub is None else root / str(sub)
        if sub is not None and (not safe_folder_name(str(sub)) or not folder.is_dir()):
            report.problems.append(
                f"{root / 'concept.yaml'}: sub-class {sub!r} needs a folder {folder} with a safe name "
                f"({CONCEPT_NAME.pattern}); create or rename the folder"
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
    if declared:
        _warn_undeclared(root, {str(s) for s in subclasses}, report)
    return ConceptFolder(name, category, trigger, class_word, root, leaves) if ok else None


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _holds_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTS for p in folder.iterdir())


def _warn_undeclared(root: Path, declared: set[str], report: Report) -> None:
    """Sub-folders that concept.yaml does not declare, and images beside declared sub-class folders."""
    for d in _subfolders(root):
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


def check_concepts(specs: list[str]) -> tuple[list[ConceptFolder], Report]:
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
    for lines in (report.problems, report.warnings, report.notes):  # one line each, whatever a library said
        lines[:] = [" ".join(line.splitlines()) for line in lines]
    return concepts, report


def load_concepts(specs: list[str]) -> list[ConceptFolder]:
    """Load and validate every concept; raise one InputError listing all problems. Warnings are logged."""
    concepts, report = check_concepts(specs)
    if report.problems:
        raise InputError(report.problems)
    for w in report.warnings:
        log.warning("%s", w)
    return concepts


def all_leaves(concepts: list[ConceptFolder]) -> list[Leaf]:
    return [leaf for c in concepts for leaf in c.leaves]
