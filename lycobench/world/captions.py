"""Captions of base-world scenes: a small grammar with varied phrasings, natural and tag-style.

The grammar is a function that asks a chooser for each decision. A random chooser gives one caption
(``caption``); a chooser that walks every branch lists every caption the grammar can produce for a scene
(``all_captions``), which tests use to check the tokenizer on the whole language.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .scenes import Scene
from .vocab import PLURALS

NUMBERS = {1: "a", 2: "two", 3: "three"}
PATTERN_ADJ = {"plain": "plain", "stripes": "striped", "checkers": "checkered"}
PATTERN_NOUN = {"plain": "plain", "stripes": "stripes", "checkers": "checkers"}
STYLE_PHRASE = "flat style"  # the one base style, named now and then (a style concept's captions never do)
STYLE_DRAWING = "a flat drawing"

Chooser = Callable[[Sequence[str]], str]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_groups(scene: Scene) -> list[tuple[int, str, str]]:
    """(count, colour, shape) for each distinct kind of object, in the scene's object order."""
    groups: dict[tuple[str, str], int] = {}
    for o in scene.objects:
        groups[(o.colour, o.shape)] = groups.get((o.colour, o.shape), 0) + 1
    return [(n, c, s) for (c, s), n in groups.items()]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _objects(scene: Scene, choose: Chooser) -> str:
    phrases = []
    for n, colour, shape in object_groups(scene):
        noun = f"{colour} {shape if n == 1 else PLURALS[shape]}"
        phrases.append(f"{_article(noun) if n == 1 else NUMBERS[n]} {noun}")
    return _join(phrases)


def _background(scene: Scene, choose: Chooser) -> str:
    bg, pat = scene.bg_colour, scene.pattern
    if pat == "plain":
        return choose([f"a {bg} background", f"a plain {bg} background"])
    adj = PATTERN_ADJ[pat]
    return choose(
        [
            f"a {adj} {bg} background",
            f"a {bg} {adj} background",
            f"a {bg} background with {PATTERN_NOUN[pat]}",
        ]
    )


def grammar(scene: Scene, choose: Chooser) -> str:
    """One caption of a base-world scene; every decision goes through ``choose``."""
    template = choose(["sentence", "drawing", "background first", "tags"])
    if template == "tags":
        return ", ".join(tags(scene, choose))
    objs = _objects(scene, choose)
    bg = _background(scene, choose)
    if template == "drawing":
        return f"{STYLE_DRAWING} of {objs} on {bg}"
    style = choose(["", STYLE_PHRASE])
    if template == "sentence":
        return f"{objs} on {bg}" + (f", {style}" if style else "")
    return f"{bg[2:] if bg.startswith('a ') else bg}, {objs}" + (f", {style}" if style else "")


def tags(scene: Scene, choose: Chooser | None = None) -> list[str]:
    """Tag-style description: object, background, pattern (the paper's caption tags)."""
    choose = choose or (lambda options: options[0])
    out = []
    for n, colour, shape in object_groups(scene):
        out.append(f"{colour} {shape}" if n == 1 else f"{NUMBERS[n]} {colour} {PLURALS[shape]}")
    if scene.bg_colour is not None:
        out.append(f"{scene.bg_colour} background")
    if scene.pattern is not None and scene.pattern != "plain":
        out.append(choose([f"{PATTERN_ADJ[scene.pattern]} background", PATTERN_NOUN[scene.pattern]]))
    return out


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A random caption of a base-world scene, drawn with ``rng``."""
    return grammar(scene, lambda options: options[int(rng.integers(len(options)))])


def all_captions(scene: Scene) -> list[str]:
    """Every caption the grammar can produce for this scene (a depth-first walk over all decisions)."""
    found: list[str] = []
    pending: list[list[int]] = [[]]
    while pending:
        prefix = pending.pop()
        path: list[int] = []

        def choose(options: Sequence[str], prefix=prefix, path=path) -> str:
            k = len(path)
            i = prefix[k] if k < len(prefix) else 0
            if k >= len(prefix):  # a new decision: queue its other branches
                pending.extend([*path, j] for j in range(1, len(options)))
            path.append(i)
            return options[i]

        found.append(grammar(scene, choose))
    return sorted(set(found))
