"""Metrics: pure functions on features or oracle predictions, each registered with its metric card.

Definitions follow the LyCORIS paper (docs/paper-protocol.md, section 5) where it has one; the others
(FD/KID guards, base-model drift, copy detection, oracle scores) are lycobench's and say so on their card.
Features are rows. Every function is invariant to the order of its samples (paired inputs are permuted
together) and returns a finite float, or raises ``TooFewSamples`` when the input cannot support it.

The registry (``METRICS``) is the single source of the metric cards (``python -m lycobench metrics``,
docs/metrics.md): formula, direction, encoder role, level, the paper's name and other tools' conventions.

Modules: registry (the card type, the decorator, shared guards), features (encoder-feature metrics),
oracle_scores (the world oracle's). Importing the package registers every metric, in card order.
"""

from .features import (
    base_drift,
    copy_rate,
    copy_similarity,
    frechet_distance,
    image_similarity,
    kid,
    squared_centroid_distance,
    style_distance,
    style_loss,
    text_similarity,
    vendi,
    vendi_from_kernel,
)
from .oracle_scores import (
    attribute_accuracy,
    concept_detection,
    concept_leakage,
    oracle_drift,
    oracle_heads,
    oracle_vendi,
)
from .registry import (
    INPUTS,
    LEVELS,
    METRICS,
    Metric,
    TooFewSamples,
    definitions,
    metric,
    normalize,
    paper_level,
)

__all__ = [
    "INPUTS", "LEVELS", "METRICS", "Metric", "TooFewSamples", "definitions", "metric", "normalize", "paper_level",
    "base_drift", "copy_rate", "copy_similarity", "frechet_distance", "image_similarity", "kid",
    "squared_centroid_distance", "style_distance", "style_loss", "text_similarity", "vendi",
    "vendi_from_kernel", "attribute_accuracy", "concept_detection", "concept_leakage", "oracle_drift",
    "oracle_heads", "oracle_vendi",
]  # fmt: skip
