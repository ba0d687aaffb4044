"""Prompt sets per leaf and prompt type, with the paper's image counts and seed scheme.

A *prompt file* is one (leaf, prompt type). Image i of a prompt file uses seed ``base_seed + i`` (the
paper's 1000 + i), whatever the model, so every configuration and the base model see the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import PROMPTS_DIR
from .data import Leaf


@dataclass(frozen=True)
class PromptImage:
    leaf: str
    prompt_type: str
    prompt_id: int  # index of the prompt within its prompt file
    index: int  # index of the image within its prompt file (the seed offset)
    prompt: str
    seed: int


def read_templates(path: Path) -> list[str]:
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def template_version(path: Path) -> str:
    for ln in path.read_text(encoding="utf-8").splitlines():
        if ln.startswith("# version:"):
            return ln.split(":", 1)[1].strip()
    return "0"


def split_counts(n_images: int, n_prompts: int) -> list[int]:
    """The paper's rule: floor(n/N) images per prompt, the first n mod N prompts get one more;
    with more prompts than images only the first n prompts are used (one image each)."""
    if n_prompts == 0:
        return []
    base, extra = divmod(n_images, n_prompts)
    return [base + (1 if i < extra else 0) for i in range(n_prompts)]


def prompts_for(leaf: Leaf, prompt_type: str) -> list[str]:
    d = leaf.descriptor
    if prompt_type == "train":
        return [item.caption for item in leaf.items]
    if prompt_type == "trigger":
        return [d]
    if prompt_type == "alter":
        return [t.replace("{}", d) for t in read_templates(PROMPTS_DIR / "alter" / f"{leaf.category}.txt")]
    if prompt_type == "style":
        return [t.replace("{}", d) for t in read_templates(PROMPTS_DIR / "style" / "default.txt")]
    raise ValueError(f"unknown prompt type {prompt_type!r} (expected train, trigger, alter or style)")


def applies(leaf: Leaf, prompt_type: str) -> bool:
    # The paper generates no <style> images for the styles category.
    return not (prompt_type == "style" and leaf.category == "style")


def prompt_file(leaf: Leaf, prompt_type: str, n_images: int, base_seed: int) -> list[PromptImage]:
    prompts = prompts_for(leaf, prompt_type)
    out, i = [], 0
    for pid, (prompt, count) in enumerate(zip(prompts, split_counts(n_images, len(prompts)))):
        for _ in range(count):
            out.append(PromptImage(leaf.name, prompt_type, pid, i, prompt, base_seed + i))
            i += 1
    return out


def prompt_plan(
    leaves: list[Leaf], prompt_types: list[str], images_per_type: dict, base_seed: int
) -> list[PromptImage]:
    """Every image to generate for one checkpoint, in a fixed order."""
    plan = []
    for leaf in leaves:
        for pt in prompt_types:
            if applies(leaf, pt):
                plan.extend(prompt_file(leaf, pt, int(images_per_type[pt]), base_seed))
    return plan


def prompt_sources(prompt_types: list[str]) -> dict[str, str]:
    """Versions of the template files in use: part of every generation's provenance and cache key."""
    files = {}
    if "alter" in prompt_types:
        files.update(
            {f"alter/{p.name}": template_version(p) for p in sorted((PROMPTS_DIR / "alter").glob("*.txt"))}
        )
    if "style" in prompt_types:
        files["style/default.txt"] = template_version(PROMPTS_DIR / "style" / "default.txt")
    return files


def text_for_clip(prompt: str, leaf: Leaf) -> str:
    """The paper's trigger-word processing before CLIP text encoding (paper-protocol.md, section 5.3).

    Characters: drop the trigger, keep the class word. Objects and scenes: the trigger becomes the
    concept's plain name. Styles: drop trigger and class word. Sub-class keywords made of a rare token
    (the anime "<token> outfit") are dropped; plain-word keywords ("realistic") stay.
    """
    words = prompt.replace(",", " , ").split()
    if leaf.category == "character":
        words = [w for w in words if w != leaf.trigger]
    elif leaf.category in ("object", "scene"):
        words = [leaf.concept.replace("-", " ") if w == leaf.trigger else w for w in words]
    else:
        text = " ".join(words).replace(f"{leaf.trigger} {leaf.class_word}", "")
        words = text.split()
    if leaf.keyword and len(leaf.keyword.split()) > 1:
        text = " ".join(words).replace(leaf.keyword, "")
        words = text.split()
    text = " ".join(words).replace(" ,", ",")
    while ", ," in text or ",," in text:
        text = text.replace(", ,", ",").replace(",,", ",")
    text = text.strip(" ,")
    return text[3:] if text.startswith("of ") else text
