"""The metric registry: ``Metric`` (a metric card), the ``metric`` decorator that fills ``METRICS``, and the
helpers every metric shares (unit rows, sample-size guards)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# How evaluate.py feeds a metric:
#   refs    fn(generated features, training-image features of the leaf)
#   texts   fn(image features, features of each image's processed prompt), rows paired
#   images  fn(samples of one image set)
#   pairs   fn(fine-tuned samples, base-model samples), rows paired by (prompt, seed)
#   oracle  fn(oracle predictions of a selection of images, ...) (see each function)
# A sample is an image's feature row, or for oracle metrics the oracle's prediction (a dict per image).
INPUTS = ("refs", "texts", "images", "pairs", "oracle")
# How the stored value aggregates: image = mean of a per-image (or per-pair) value over the set;
# prompt = the metric per prompt, averaged over the prompts; set = one value from the whole set.
LEVELS = ("image", "prompt", "set")


class TooFewSamples(ValueError):
    """The sample cannot support the metric (e.g. FD with fewer images than feature dimensions)."""


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., float]
    higher_is_better: bool
    inputs: str
    encoder: str  # encoder role: clip | dino | style | oracle
    levels: tuple[str, ...]
    criterion: str
    paper_name: str  # '' when the paper has no such metric
    formula: str
    conventions: str  # how other tools scale or clip it, so numbers can be compared with papers
    origin: str  # paper | paper code | lycobench
    paper_prompt_types: tuple[str, ...] = ()  # where the paper reports it
    categories: tuple[str, ...] | None = None  # leaf categories it applies to (None: all)
    params: tuple[str, ...] = ()  # keyword arguments read from evaluate.params.<name>
    note: str = ""


METRICS: dict[str, Metric] = {}
# Raise when a metric's code changes what it returns without its formula text changing: the evaluation key
# holds this and every formula (``definitions``), so stored scores are recomputed, never silently mixed.
DEFINITIONS_VERSION = 2


def metric(name: str, **card) -> Callable:
    """Register a metric function with its card (see ``Metric``)."""

    def register(fn):
        assert card["inputs"] in INPUTS and all(lv in LEVELS for lv in card["levels"]), name
        METRICS[name] = Metric(name=name, fn=fn, **card)
        return fn

    return register


def definitions() -> dict:
    """What the evaluation key holds of the metrics: their version and every formula."""
    return {"version": DEFINITIONS_VERSION, "formulas": {n: m.formula for n, m in METRICS.items()}}


def paper_level(name: str, prompt_type: str) -> str:
    """The level the paper reports a metric at: Vendi per prompt on <alter> (10 images per prompt), per set
    elsewhere; every other metric has one level."""
    m = METRICS[name]
    return "prompt" if "prompt" in m.levels and prompt_type == "alter" else m.levels[0]


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _need(n: int, at_least: int, what: str) -> None:
    if n < at_least:
        raise TooFewSamples(f"{what} needs at least {at_least} sample(s), got {n}")
