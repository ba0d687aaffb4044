"""What a prompt asks the image to show, in the world oracle's vocabulary (for ``attribute_accuracy``).

A prompt's attributes are read from its words with the world's vocabulary (``lycobench.world.vocab``): the
background colour and pattern, object colours and shapes, the object count when every object phrase states
one. Only what the prompt states is expected; an attribute the world
leaves undefined for the concept in the prompt (``world.scenes.labels``) is dropped. When images.parquet
carries an ``attributes`` column (the scene description a world prompt was made from), evaluate uses that
instead of parsing.
"""

from __future__ import annotations

import re

from .world.captions import PATTERN_ADJ, PATTERN_NOUN
from .world.vocab import BG_COLOURS, COLOURS, PLURALS, SHAPES


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_PATTERN_WORD = {**{a: p for p, a in PATTERN_ADJ.items()}, **{n: p for p, n in PATTERN_NOUN.items()}}
_NUMBER = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}
_SHAPE = {**{s: (s, False) for s in SHAPES}, **{p: (s, True) for s, p in PLURALS.items()}}

_BG = re.compile(
    rf"\b(?:(?P<pre>{_alternation(PATTERN_ADJ.values())}) )?(?P<bg>{_alternation(BG_COLOURS)})"
    rf"(?: (?P<post>{_alternation(PATTERN_ADJ.values())}))? background"
    rf"(?: with (?P<noun>{_alternation(PATTERN_NOUN.values())}))?\b"
)
_PATTERN_TAG = re.compile(rf"^(?:(?P<adj>{_alternation(PATTERN_ADJ.values())}) background|(?P<noun>"
                          rf"{_alternation(PATTERN_NOUN.values())}))$")  # fmt: skip
# an object colour directly after a background-colour prefix ("light blue", "dark blue") is a background
_OBJ = re.compile(
    rf"(?<!light )(?<!dark )\b(?:(?P<num>{_alternation(_NUMBER)}) )?"
    rf"(?P<colour>{_alternation(COLOURS)}) (?P<shape>{_alternation(_SHAPE)})\b"
)


def parse(prompt: str) -> dict:
    """Attributes a world prompt states: bg_colour, pattern, colours, shapes, count."""
    text = " ".join(prompt.lower().split())
    out: dict = {}
    bg = _BG.search(text)
    if bg:
        out["bg_colour"] = bg["bg"]
        word = bg["pre"] or bg["post"] or bg["noun"]
        if word:
            out["pattern"] = _PATTERN_WORD[word]
    for tag in (t.strip() for t in text.split(",")):
        m = _PATTERN_TAG.match(tag)
        if m and "pattern" not in out:
            out["pattern"] = _PATTERN_WORD[m["adj"] or m["noun"]]
    objects = list(_OBJ.finditer(text))
    if objects:
        out["colours"] = frozenset(m["colour"] for m in objects)
        out["shapes"] = frozenset(_SHAPE[m["shape"]][0] for m in objects)
        counts = [_count(m) for m in objects]
        if all(c is not None for c in counts):
            out["count"] = sum(counts)
    return out


def _count(m: re.Match) -> int | None:
    plural = _SHAPE[m["shape"]][1]
    if m["num"]:
        return _NUMBER[m["num"]]
    return None if plural else 1  # a bare singular tag ("red circle") is one object


def defined(expected: dict, concept_category: str | None) -> dict:
    """Drop what the world leaves undefined when a concept of this category is in the image (mirrors
    ``world.scenes.labels``): scene concepts bring their own background and objects."""
    drop = {"shapes", "colours", "count", "bg_colour", "pattern"} if concept_category == "scene" else set()
    return {k: v for k, v in expected.items() if k not in drop}


def expected_attributes(prompt: str, concept_category: str | None) -> dict:
    """What the image of this prompt should show, as the oracle would label it."""
    return defined(parse(prompt), concept_category)


def from_json(value) -> dict:
    """An ``attributes`` cell of images.parquet (JSON object, oracle vocabulary) with sets restored."""
    import json

    data = json.loads(value) if isinstance(value, str) else dict(value)
    return {k: frozenset(v) if k in ("shapes", "colours") else v for k, v in data.items()}
