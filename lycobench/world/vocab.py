"""The embedded world's vocabulary: the names the renderer, the captions and the oracle share.

Everything here is data. Order matters: list positions are the oracle's class indices.
"""

from __future__ import annotations

import numpy as np

# Eight shapes whose silhouettes differ at 32 px, also as outlines (no ring: an outlined circle would look like one).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "heart", "cross", "crescent")
PLURALS: dict[str, str] = {s: s + ("es" if s.endswith("s") else "s") for s in SHAPES}

# Object colours: far apart in RGB so that soft, colour-shifted generations still read as one name.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 135, 20),
    "yellow": (245, 215, 35),
    "green": (35, 165, 60),
    "blue": (40, 85, 220),
    "purple": (140, 55, 190),
    "white": (246, 246, 246),
    "black": (22, 22, 22),
}

# Background colours (names may take two words: "light blue").
BG_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (238, 238, 238),
    "gray": (125, 125, 125),
    "black": (18, 18, 18),
    "beige": (226, 208, 166),
    "pink": (242, 178, 200),
    "light blue": (160, 202, 242),
    "light green": (172, 222, 160),
    "dark blue": (22, 32, 92),
}

# World v2 keeps only what its base model masters (docs/world-model.md): one large, centred, flat object per
# image on a plain, striped or checkered background. Counts, render styles, sizes and positions were cut: with
# them a 2-core budget never bound shape words to shapes (shape 0.175 after 10,000 UNet steps).
PATTERNS: tuple[str, ...] = ("plain", "stripes", "checkers")
STYLES: tuple[str, ...] = ("flat",)  # the base world's one render style; style concepts paint over it
COUNTS: tuple[int, ...] = (0, 1)  # 0: a concept figure alone, without a base object

# Object radius as a fraction of the image side (legible after downsampling to 32 px).
RADIUS = 0.35

# Colour-shape pairs that base pretraining never shows (one per shape and one per colour), to test composition.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("green", "circle"),
    ("yellow", "square"),
    ("blue", "triangle"),
    ("red", "diamond"),
    ("white", "star"),
    ("orange", "heart"),
    ("purple", "cross"),
    ("black", "crescent"),
)

# Pattern contrast: the second tone of a patterned background is the base colour mixed towards white (dark
# colours) or black (light ones), so the background keeps one colour name.
PATTERN_MIX = 0.32
GRADIENT_MIX = 0.45  # scene concepts' backdrops only


def rgb(name: str, table: dict[str, tuple[int, int, int]] = COLOURS) -> np.ndarray:
    """The colour as float32 RGB in [0, 1]."""
    return np.asarray(table[name], dtype=np.float32) / 255.0


def second_tone(colour: np.ndarray, mix: float) -> np.ndarray:
    """The pattern's second tone: lighter for dark colours, darker for light ones."""
    luma = float(colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    target = np.ones(3, np.float32) if luma < 0.5 else np.zeros(3, np.float32)
    return (colour + mix * (target - colour)).astype(np.float32)


def _contrast_ok(obj: str, bg: str, threshold: float = 0.35) -> bool:
    """An object colour may sit on a background when it differs from both of the background's tones."""
    c, b = rgb(obj), rgb(bg, BG_COLOURS)
    tones = [b, second_tone(b, PATTERN_MIX)]
    return all(float(np.linalg.norm(c - t)) > threshold for t in tones)


# Which backgrounds each object colour may appear on (a scene's background must suit all its objects).
COMPATIBLE_BG: dict[str, tuple[str, ...]] = {
    c: tuple(b for b in BG_COLOURS if _contrast_ok(c, b)) for c in COLOURS
}


def base_words() -> list[str]:
    """Every word the base world's captions use for its attributes (for trigger-collision checks)."""
    words: set[str] = set()
    for group in (SHAPES, PLURALS.values(), COLOURS, BG_COLOURS, PATTERNS, STYLES):
        for name in group:
            words.update(name.split())
    return sorted(words)
