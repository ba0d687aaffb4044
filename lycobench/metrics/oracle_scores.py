"""Metrics on the embedded world's oracle predictions (ground truth only the world has): concept detection
and leakage, attribute accuracy, label diversity and drift."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .features import vendi_from_kernel
from .registry import _need, metric

# --- oracle scores (embedded world) ----------------------------------------------------------------
# Predictions are one dict per image, head -> value, as the world oracle decodes them: 'leaf' is "none" or
# the concept leaf ("name" or "name/sub-class"); 'shapes' and 'colours' are frozensets.


@metric(
    "concept_detection",
    higher_is_better=True,
    inputs="oracle",
    encoder="oracle",
    levels=("image",),
    criterion="fidelity",
    paper_name="",
    formula="P = (1/n) sum_i [oracle leaf(x_i) in A], over the images whose prompt holds the leaf's trigger; "
    "A = {the prompt's leaf}, or for a catch-all sub-class (no keyword: the prompt names the concept alone) "
    "every leaf of its concept",
    conventions="Ground truth only the embedded world has. The oracle counterpart of image similarity.",
    origin="lycobench",
)
def concept_detection(pred_leaves: Sequence[str], accepted: str | set[str]) -> float:
    _need(len(pred_leaves), 1, "concept_detection")
    accepted = {accepted} if isinstance(accepted, str) else set(accepted)
    return float(np.mean([p in accepted for p in pred_leaves]))


@metric(
    "concept_leakage",
    higher_is_better=False,
    inputs="oracle",
    encoder="oracle",
    levels=("image",),
    criterion="leakage",
    paper_name="",
    formula="K = (1/n) sum_i [oracle leaf(x_i) is one of the trained leaves], over the images whose prompt holds "
    "no trigger of any trained concept",
    conventions="The paper saw leakage by eye (castle <alter> images showing the waterfall); the oracle counts "
    "it. The base model's rate (step 0) is the oracle's false-positive floor.",
    origin="lycobench",
)
def concept_leakage(pred_leaves: Sequence[str], trained_leaves: set[str]) -> float:
    _need(len(pred_leaves), 1, "concept_leakage")
    return float(np.mean([p in trained_leaves for p in pred_leaves]))


@metric(
    "attribute_accuracy",
    higher_is_better=True,
    inputs="oracle",
    encoder="oracle",
    levels=("image",),
    criterion="controllability",
    paper_name="",
    formula="A = sum_i sum_{a in E_i} [oracle a(x_i) = E_i[a]] / sum_i |E_i|; E_i = the attributes the prompt of "
    "image i asks for (background colour, pattern, object colours, shapes, count)",
    conventions="Ground truth only the embedded world has; GenEval-like (object/colour/count checks by a "
    "detector) but exact. The oracle counterpart of text similarity.",
    origin="lycobench",
)
def attribute_accuracy(pred: Sequence[dict], expected: Sequence[dict]) -> float:
    hits = [pred[i][k] == v for i, e in enumerate(expected) for k, v in e.items()]
    _need(len(hits), 1, "attribute_accuracy (attributes asked for)")
    return float(np.mean(hits))


def _label_kernel(a: Sequence[dict], b: Sequence[dict], heads: list[str]) -> np.ndarray:
    return np.array([[np.mean([x[h] == y[h] for h in heads]) for y in b] for x in a], dtype=np.float64)


def oracle_heads(pred: Sequence[dict]) -> list[str]:
    """The heads compared by the oracle metrics: all but 'concept', which is read from 'leaf'."""
    return sorted(k for k in pred[0] if k != "concept") if pred else []


@metric(
    "oracle_vendi",
    higher_is_better=True,
    inputs="images",
    encoder="oracle",
    levels=("set", "prompt"),
    criterion="diversity",
    paper_name="",
    formula="Vendi score (q = 1) with K_ij = the fraction of oracle heads on which images i and j agree",
    conventions="lycobench's: diversity of what the images show (shapes, colours, background, style, concept), "
    "the oracle counterpart of vendi.",
    origin="lycobench",
)
def oracle_vendi(pred: Sequence[dict]) -> float:
    _need(len(pred), 1, "oracle_vendi")
    return vendi_from_kernel(_label_kernel(pred, pred, oracle_heads(pred)))


@metric(
    "oracle_drift",
    higher_is_better=False,
    inputs="pairs",
    encoder="oracle",
    levels=("image",),
    criterion="preservation",
    paper_name="",
    formula="D = (1/n) sum_i (fraction of oracle heads whose prediction differs between x_i and b_i); b_i = the "
    "base model's image with the same prompt and seed",
    conventions="lycobench's: the oracle counterpart of base_drift and style_loss.",
    origin="lycobench",
)
def oracle_drift(pred: Sequence[dict], base_pred: Sequence[dict]) -> float:
    _need(len(pred), 1, "oracle_drift")
    heads = oracle_heads(pred)
    return float(np.mean([1.0 - np.mean([p[h] == b[h] for h in heads]) for p, b in zip(pred, base_pred)]))
