"""Prompt sets per leaf and prompt type, with the paper's image counts and seed scheme.

A *prompt file* is one (leaf, prompt type). Image i of a prompt file uses seed ``base_seed + i`` (the
paper's 1000 + i), whatever the model, so every configuration and the base model see the same noise.

Prompt types: ``train`` (the leaf's captions), ``trigger`` (the concept descriptor alone), ``alter`` (the
concept in new contexts), ``style`` (the concept in other styles) and ``agnostic`` (no trigger word:
class-free prompts, then the alter templates with the class word alone, to catch concept leakage).
Templates live in ``prompts/<set>/<type>/`` (``generate.templates=world|paper`` or a folder); for each
leaf the first of ``<concept>.txt``, ``<category>.txt``, ``default.txt`` that exists is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .config import PROMPTS_DIR
from .data import InputError, Leaf

PROMPT_TYPES = ("train", "trigger", "alter", "style", "agnostic")
TEMPLATE_TYPES = ("alter", "style", "agnostic")
SET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EXPECT_KEY = re.compile(r"^[a-z_]{1,32}$")
OUTFIT = re.compile(
    r"\S+ outfit"
)  # a rare token + "outfit": dropped before CLIP text encoding, as the paper does
# Expectation keys whose values are sets (the world oracle's multi-label heads).
SET_KEYS = ("shapes", "colours")


@dataclass(frozen=True)
class PromptImage:
    leaf: str
    prompt_type: str
    prompt_id: int  # index of the prompt within its prompt file
    index: int  # index of the image within its prompt file (the seed offset)
    prompt: str
    seed: int
    variant: str = ""  # agnostic prompts: "class-free" or "class-word"
    expect: tuple[tuple[str, str], ...] = ()  # what an oracle should read in the image (see parse_expect)
    source: str = ""  # the template file ('' for captions and the bare descriptor)


@dataclass(frozen=True)
class Template:
    text: str
    expect: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TemplateFile:
    path: Path
    version: str
    sha256: str
    templates: tuple[Template, ...]


@dataclass(frozen=True)
class Prompt:
    text: str
    variant: str = ""
    expect: tuple[tuple[str, str], ...] = ()
    source: str = ""


# --- template files -----------------------------------------------------------------------------


def read_template_file(path: Path, slot: bool = True) -> TemplateFile:
    """Parse a template file: a ``# version: N`` first line, ``#`` comments, one prompt per line.

    A line is ``<prompt>`` or ``<prompt> | key=value; key=value`` (multi-label values comma-separated).
    ``slot=True``: every prompt holds exactly one ``{}`` (the concept descriptor); ``slot=False``: none.
    """
    path = Path(path)
    raw = path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    if not lines or not lines[0].startswith("# version:") or not lines[0].split(":", 1)[1].strip():
        raise InputError([f"{path}: the first line must be '# version: <n>' (bump it when prompts change)"])
    problems, templates = [], []
    for no, line in enumerate(lines[1:], start=2):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        text, _, tail = line.partition(" | ")
        text = text.strip()
        slots = text.count("{}")
        if slots != (1 if slot else 0) or text.replace("{}", "").count("{") or "}" in text.replace("{}", ""):
            want = "exactly one '{}' (the concept descriptor)" if slot else "no '{}' (no concept)"
            problems.append(f"{path}:{no}: {text!r} must hold {want}")
            continue
        expect = []
        for pair in filter(None, (p.strip() for p in tail.split(";"))):
            key, eq, value = (s.strip() for s in pair.partition("="))
            if not eq or not EXPECT_KEY.match(key) or not value:
                problems.append(f"{path}:{no}: expectation {pair!r} must read key=value")
            else:
                expect.append((key, value))
        templates.append(Template(text, tuple(expect)))
    if not templates and not problems:
        problems.append(f"{path}: no prompts; write one prompt per line")
    if problems:
        raise InputError(problems)
    version = lines[0].split(":", 1)[1].strip()
    return TemplateFile(path, version, hashlib.sha256(raw).hexdigest(), tuple(templates))


def template_root(templates: str) -> Path:
    """A template set: a name under the project's prompts/ folder, or a path to a folder."""
    if SET_NAME.match(templates) and (PROMPTS_DIR / templates).is_dir():
        return PROMPTS_DIR / templates
    p = Path(templates).expanduser()
    if not SET_NAME.match(templates) and p.is_dir():
        return p.resolve()
    sets = sorted(d.name for d in PROMPTS_DIR.iterdir() if d.is_dir())
    raise InputError(
        [
            f"generate.templates={templates!r}: no such template set; use one of {', '.join(sets)} or a folder path"
        ]
    )


def source_name(path: Path) -> str:
    """How a template file is named in provenance: relative to prompts/ when it is one of the project's."""
    try:
        return str(Path(path).resolve().relative_to(PROMPTS_DIR.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def template_file(leaf: Leaf, prompt_type: str, templates: str) -> Path:
    """The first of <concept>.txt, <category>.txt, default.txt in <set>/<prompt_type>/ that exists."""
    folder = template_root(templates) / prompt_type
    names = [f"{leaf.concept}.txt", f"{leaf.category}.txt", "default.txt"]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise InputError(
        [
            f"no <{prompt_type}> templates for concept {leaf.concept!r} ({leaf.category}) in {folder}: "
            f"write one of {', '.join(names)}"
        ]
    )


# --- prompts per leaf -----------------------------------------------------------------------------


def split_counts(n_images: int, n_prompts: int) -> list[int]:
    """The paper's rule: floor(n/N) images per prompt, the first n mod N prompts get one more;
    with more prompts than images only the first n prompts are used (one image each)."""
    if n_prompts == 0:
        return []
    base, extra = divmod(n_images, n_prompts)
    return [base + (1 if i < extra else 0) for i in range(n_prompts)]


def _filled(leaf: Leaf, prompt_type: str, templates: str, fill: str, variant: str = "") -> list[Prompt]:
    path = template_file(leaf, prompt_type, templates)
    src = source_name(path)
    return [
        Prompt(t.text.replace("{}", fill), variant, t.expect, src)
        for t in read_template_file(path, slot=True).templates
    ]


def prompts_for(leaf: Leaf, prompt_type: str, templates: str = "world") -> list[Prompt]:
    """The prompts of one prompt file, in order (their position is the prompt id)."""
    d = leaf.descriptor
    if prompt_type == "train":
        return [Prompt(item.caption) for item in leaf.items]
    if prompt_type == "trigger":
        return [Prompt(d)]
    if prompt_type in ("alter", "style"):
        return _filled(leaf, prompt_type, templates, d)
    if prompt_type == "agnostic":
        # Class-free prompts first: they do not depend on the leaf, so their seeds (and images) are shared
        # by every leaf. Then the alter templates with the class word alone, without trigger or keyword.
        path = template_file(leaf, "agnostic", templates)
        src = source_name(path)
        free = [
            Prompt(t.text, "class-free", t.expect, src)
            for t in read_template_file(path, slot=False).templates
        ]
        return free + _filled(leaf, "alter", templates, leaf.class_word, "class-word")
    raise ValueError(f"unknown prompt type {prompt_type!r} (expected one of {', '.join(PROMPT_TYPES)})")


def applies(leaf: Leaf, prompt_type: str) -> bool:
    # The paper generates no <style> images for the styles category.
    return not (prompt_type == "style" and leaf.category == "style")


def prompt_file(
    leaf: Leaf, prompt_type: str, n_images: int, base_seed: int, templates: str = "world"
) -> list[PromptImage]:
    prompts = prompts_for(leaf, prompt_type, templates)
    out, i = [], 0
    for pid, (p, count) in enumerate(zip(prompts, split_counts(n_images, len(prompts)))):
        for _ in range(count):
            out.append(
                PromptImage(
                    leaf.name, prompt_type, pid, i, p.text, base_seed + i, p.variant, p.expect, p.source
                )
            )
            i += 1
    return out


def prompt_plan(
    leaves: list[Leaf],
    prompt_types: list[str],
    images_per_type: dict,
    base_seed: int,
    templates: str = "world",
) -> list[PromptImage]:
    """Every image to generate for one checkpoint, in a fixed order. Reports every problem at once."""
    problems = [
        f"generate.prompt_types: unknown {pt!r} (known: {', '.join(PROMPT_TYPES)})"
        for pt in prompt_types
        if pt not in PROMPT_TYPES
    ]
    problems += [
        f"generate.images_per_type has no entry for {pt!r}: add images_per_type.{pt}=<n>"
        for pt in prompt_types
        if pt in PROMPT_TYPES and pt not in images_per_type
    ]
    if problems:
        raise InputError(problems)
    plan: list[PromptImage] = []
    for leaf in leaves:
        for pt in prompt_types:
            if not applies(leaf, pt):
                continue
            try:
                plan.extend(prompt_file(leaf, pt, int(images_per_type[pt]), base_seed, templates))
            except InputError as e:
                problems.extend(p for p in e.problems if p not in problems)
    if problems:
        raise InputError(problems)
    return plan


def plan_for(gcfg, leaves: list[Leaf]) -> list[PromptImage]:
    """The prompt plan of a ``generate`` config node."""
    return prompt_plan(
        leaves,
        list(gcfg.prompt_types),
        dict(gcfg.images_per_type),
        int(gcfg.base_seed),
        str(gcfg.get("templates") or "world"),
    )


def template_sources(plan: list[PromptImage]) -> dict[str, dict[str, str]]:
    """Version and sha256 of every template file a plan uses: provenance and part of the stage key."""
    out = {}
    for src in sorted({it.source for it in plan if it.source}):
        path = Path(src) if Path(src).is_absolute() else PROMPTS_DIR / src
        tf = read_template_file(path, slot=path.parent.name != "agnostic")  # agnostic: class-free prompts
        out[src] = {"version": tf.version, "sha256": tf.sha256}
    return out


def parse_expect(expect) -> dict[str, object]:
    """Expectations as values: ``count`` an int, ``shapes``/``colours`` frozensets, the rest strings.

    Accepts the pairs of a PromptImage or the JSON object of the ``attributes`` column of images.parquet.
    """
    pairs = json.loads(expect).items() if isinstance(expect, str) else expect
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in SET_KEYS:
            values = value.split(",") if isinstance(value, str) else value
            out[key] = frozenset(str(v).strip() for v in values)
        elif key == "count":
            out[key] = int(value)
        else:
            out[key] = value
    return out


# --- text similarity ----------------------------------------------------------------------------


def text_for_clip(prompt: str, leaf: Leaf) -> str:
    """The paper's trigger-word processing before CLIP text encoding (docs/paper-protocol.md, section 5.3).

    Characters: drop the trigger, keep the class word. Objects and scenes: the trigger becomes the
    concept's plain name ('-' and '_' read as spaces: plushie_bunny -> plushie bunny). Styles: drop trigger
    and class word. An outfit keyword, a rare token before "outfit" (the paper's anime sub-classes), is
    dropped; every other keyword is plain words ("realistic", "pink robe", "afro, illustration") and stays.
    """
    words = prompt.replace(",", " , ").split()
    if leaf.category == "character":
        words = [w for w in words if w != leaf.trigger]
    elif leaf.category in ("object", "scene"):
        name = leaf.concept.replace("-", " ").replace("_", " ")
        words = [name if w == leaf.trigger else w for w in words]
    else:
        text = " ".join(words).replace(f"{leaf.trigger} {leaf.class_word}", "")
        words = text.split()
    if OUTFIT.fullmatch(leaf.keyword or ""):
        text = " ".join(words).replace(leaf.keyword, "")
        words = text.split()
    text = " ".join(words).replace(" ,", ",")
    while ", ," in text or ",," in text:
        text = text.replace(", ,", ",").replace(",,", ",")
    text = text.strip(" ,")
    return text[3:] if text.startswith("of ") else text
