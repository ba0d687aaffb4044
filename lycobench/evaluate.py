"""Images + cached features -> metrics.parquet rows (long format), per checkpoint x leaf x prompt type.

The base model is checkpoint step 0 (same prompts and seeds), so every configuration can be read against
it, and paired metrics (style loss, drift) compare each image with the base image of the same leaf,
prompt type, index and seed. Each encoder runs once per image (through the feature cache); the metrics
are pure functions of those features (``lycobench.metrics``).

``evaluate.metrics`` lists metric names, each computed with the encoder role its card names; ``name@role``
computes it with another role's encoder as well (e.g. ``image_similarity@clip``). ``evaluate.prompt_types``
restricts a metric to some prompt types; ``evaluate.params`` passes a metric its parameters.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .attributes import expected_attributes, from_json
from .data import Leaf
from .metric_encoders import (
    Encoder,
    check_weights,
    image_features,
    image_keys,
    load_encoder,
    role_config,
    text_features,
)
from .metrics import METRICS, Metric, TooFewSamples
from .prompts import text_for_clip

log = logging.getLogger("lycobench")


@dataclass(frozen=True)
class Spec:
    metric: Metric
    role: str
    params: dict = field(default_factory=dict)
    prompt_types: tuple[str, ...] | None = None


def metric_specs(evaluate_cfg: DictConfig | dict) -> list[Spec]:
    """The configured metrics with their encoder role, parameters and prompt types; every problem at once."""
    ev = (
        evaluate_cfg if isinstance(evaluate_cfg, dict) else OmegaConf.to_container(evaluate_cfg, resolve=True)
    )
    params, types = ev.get("params") or {}, ev.get("prompt_types") or {}
    where = f"conf/evaluate/{ev.get('name', 'default')}.yaml"
    specs, problems = [], []
    for entry in ev.get("metrics") or []:
        name, _, role = str(entry).partition("@")
        m = METRICS.get(name)
        if m is None:
            problems.append(f"evaluate.metrics: unknown metric {name!r}; known: {', '.join(METRICS)}")
            continue
        role = role or m.encoder
        if (role == "oracle") != (m.encoder == "oracle"):
            problems.append(
                f"evaluate.metrics: {entry!r}: oracle metrics and feature metrics cannot swap encoders"
            )
            continue
        if m.inputs == "texts" and role != "clip":
            problems.append(
                f"evaluate.metrics: {entry!r}: text metrics need the clip encoder (it encodes texts)"
            )
            continue
        pt = types.get(name)
        specs.append(Spec(m, role, dict(params.get(name) or {}), tuple(pt) if pt is not None else None))
    for name, p in params.items():
        if name not in METRICS:
            problems.append(f"evaluate.params.{name}: not a metric")
        elif set(p or {}) - set(METRICS[name].params):
            bad = sorted(set(p) - set(METRICS[name].params))
            problems.append(
                f"evaluate.params.{name}: unknown parameter(s) {bad}; it takes {list(METRICS[name].params)}"
            )
    for name in set(types) - set(METRICS):
        problems.append(f"evaluate.prompt_types.{name}: not a metric")
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    return specs


def oracle_leaf(leaf: Leaf) -> str:
    """A leaf as the world oracle names it: 'name' or 'name.sub-class' (lycobench.world.concepts.leaf_names)."""
    return leaf.name


def detected_as(leaf: Leaf, leaves) -> set[str]:
    """The oracle leaves that count as drawing ``leaf``: itself; for a catch-all sub-class (no keyword: its
    prompts name the concept alone, e.g. `kivo girl` for lumi's other outfits) any leaf of its concept,
    since such a prompt asks for the character, not for one outfit."""
    if leaf.subclass is None or leaf.keyword:
        return {oracle_leaf(leaf)}
    return {oracle_leaf(lf) for lf in leaves if lf.concept == leaf.concept}


def _words(prompt: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", prompt.lower()))


class Inputs:
    """Everything the metrics read, computed lazily and once: features per role, training-image
    features per leaf, text features, oracle predictions, base-image pairs, prompt facts."""

    def __init__(self, images, leaves: list[Leaf], sweep_dir: Path, encoders: dict[str, Encoder], batch: int):
        self.images, self.sweep_dir, self.encoders, self.batch = images, Path(sweep_dir), encoders, batch
        self.cache = self.sweep_dir / "cache"
        self.leaves = {leaf.name: leaf for leaf in leaves}
        self._feats: dict[str, np.ndarray] = {}
        self._refs: dict[tuple[str, str], np.ndarray] = {}
        self._memo: dict[str, object] = {}
        words = [_words(p) for p in images["prompt"]]
        triggers = {leaf.trigger: leaf.category for leaf in leaves}
        # which trained concept (by category) each prompt names: drives leakage, detection and attributes
        self.concept_category = [next((c for t, c in triggers.items() if t in w), None) for w in words]
        self.has_leaf_trigger = [self.leaves[leaf].trigger in w for leaf, w in zip(images["leaf"], words)]

    def features(self, role: str) -> np.ndarray:
        if role not in self._feats:
            paths = [self.sweep_dir / p for p in self.images["path"]]
            if "keys" not in self._memo:  # hash each image file once, whatever the number of encoders
                self._memo["keys"] = image_keys(paths)
            keys = self._memo["keys"]
            self._feats[role] = image_features(self.encoders[role], paths, self.cache, self.batch, keys)
        return self._feats[role]

    def refs(self, role: str, leaf: str) -> np.ndarray:
        if (role, leaf) not in self._refs:
            paths = [it.image for it in self.leaves[leaf].items]
            self._refs[role, leaf] = image_features(self.encoders[role], paths, self.cache, self.batch)
        return self._refs[role, leaf]

    def texts(self, role: str) -> np.ndarray:
        key = f"texts:{role}"
        if key not in self._memo:
            texts = [
                text_for_clip(p, self.leaves[leaf])
                for p, leaf in zip(self.images["prompt"], self.images["leaf"])
            ]
            table = text_features(self.encoders[role], texts, self.cache)
            self._memo[key] = np.stack([table[t] for t in texts])
        return self._memo[key]

    def samples(self, role: str, rows) -> np.ndarray | list[dict]:
        """Feature rows of these images, or for the oracle its predictions."""
        if role == "oracle":
            pred = self.predictions()
            return [pred[i] for i in rows]
        return self.features(role)[np.asarray(rows, dtype=int)]

    def predictions(self) -> list[dict]:
        if "pred" not in self._memo:
            self._memo["pred"] = self.encoders["oracle"].decode(self.features("oracle"))
        return self._memo["pred"]

    def oracle_knows(self, leaf: Leaf) -> bool:
        """Whether the oracle has a class for ``leaf``: only the world's concepts have one, so a user's
        concept gets no detection or leakage rate (a 0 would read as "not learned")."""
        oracle = getattr(self.encoders.get("oracle"), "oracle", None)
        return oracle is not None and oracle_leaf(leaf) in oracle.classes.get("leaf", ())

    def expected(self) -> list[dict]:
        if "expected" not in self._memo:
            col = self.images["attributes"] if "attributes" in self.images else [None] * len(self.images)
            self._memo["expected"] = [
                from_json(a) if isinstance(a, str | dict) else expected_attributes(p, c)
                for a, p, c in zip(col, self.images["prompt"], self.concept_category)
            ]
        return self._memo["expected"]

    def base_pairs(self) -> dict[int, int]:
        """Row of each fine-tuned image -> row of the base image with the same leaf, prompt type, index, seed."""
        if "pairs" not in self._memo:
            im = self.images
            key = lambda r: (r.leaf, r.prompt_type, int(r.index), int(r.seed))  # noqa: E731
            base = {key(r): i for i, r in zip(im.index, im.itertuples()) if int(r.step) == 0}
            pairs = {}
            for i, r in zip(im.index, im.itertuples()):
                j = base.get(key(r))
                if int(r.step) != 0 and j is not None:
                    if im.at[j, "prompt"] != r.prompt:
                        raise ValueError(
                            f"base image {im.at[j, 'path']} has prompt {im.at[j, 'prompt']!r}, but {r.path} has "
                            f"{r.prompt!r}: images.parquet pairs them by leaf, prompt type, index and seed"
                        )
                    pairs[i] = j
            self._memo["pairs"] = pairs
        return self._memo["pairs"]


def _per_prompt(fn, x: Inputs, role: str, idx: np.ndarray) -> tuple[float, int] | None:
    """The metric per prompt (prompts with at least 2 images), averaged; None when no prompt qualifies."""
    prompt_ids = x.images["prompt_id"].to_numpy()[idx]
    groups = [idx[prompt_ids == p] for p in np.unique(prompt_ids)]
    groups = [g for g in groups if len(g) >= 2]
    if not groups:
        return None
    return float(np.mean([fn(x.samples(role, g)) for g in groups])), int(sum(len(g) for g in groups))


def compute(spec: Spec, x: Inputs, idx: np.ndarray, step: int, leaf: Leaf) -> list[tuple[str, int, float]]:
    """(level, n, value) of one metric on one image set (rows ``idx`` of images.parquet)."""
    m, fn, role, out = spec.metric, spec.metric.fn, spec.role, []
    if m.inputs == "refs":
        value = fn(x.samples(role, idx), x.refs(role, leaf.name), **spec.params)
        out.append((m.levels[0], len(idx), value))
    elif m.inputs == "texts":
        out.append((m.levels[0], len(idx), fn(x.samples(role, idx), x.texts(role)[idx])))
    elif m.inputs == "pairs":
        pairs = x.base_pairs()
        sel = [i for i in idx if i in pairs] if step != 0 else []
        if sel:
            out.append(
                (m.levels[0], len(sel), fn(x.samples(role, sel), x.samples(role, [pairs[i] for i in sel])))
            )
    elif m.inputs == "images":
        for level in m.levels:
            if level == "set":
                out.append(("set", len(idx), fn(x.samples(role, idx))))
            else:
                per = _per_prompt(fn, x, role, idx)
                if per is not None:
                    out.append(("prompt", per[1], per[0]))
    else:
        out.extend(_oracle(spec, x, idx, leaf))
    return out


def _oracle(spec: Spec, x: Inputs, idx: np.ndarray, leaf: Leaf) -> list[tuple[str, int, float]]:
    """Oracle metrics that read a selection of the set, decided by the prompts."""
    pred, fn, name = x.predictions(), spec.metric.fn, spec.metric.name
    if name == "concept_detection":  # images whose prompt names this leaf
        if not x.oracle_knows(leaf):
            return []
        sel = [i for i in idx if x.has_leaf_trigger[i]]
        args = ([pred[i]["leaf"] for i in sel], detected_as(leaf, x.leaves.values()))
    elif name == "concept_leakage":  # images whose prompt names no trained concept
        if not all(x.oracle_knows(lf) for lf in x.leaves.values()):
            return []  # a leaf it cannot see would be missed: a rate that undercounts
        sel = [i for i in idx if x.concept_category[i] is None]
        args = ([pred[i]["leaf"] for i in sel], {oracle_leaf(lf) for lf in x.leaves.values()})
    elif name == "attribute_accuracy":  # images whose prompt asks for some attribute
        expected = x.expected()
        sel = [i for i in idx if expected[i]]
        args = ([pred[i] for i in sel], [expected[i] for i in sel])
    else:
        raise ValueError(f"metric {name!r}: evaluate.py does not know how to feed this oracle metric")
    return [(spec.metric.levels[0], len(sel), fn(*args))] if sel else []


def load_encoders(encoders_cfg, roles: set[str]) -> dict[str, Encoder]:
    """The encoders of the roles the metrics need (absent roles left out); one error for missing weights."""
    present = sorted(r for r in roles if role_config(encoders_cfg, r) is not None)
    check_weights(encoders_cfg, present)
    return {r: load_encoder(encoders_cfg, r) for r in present}


def preflight(cfg: DictConfig) -> None:
    """Before any compute: the metric configuration is valid and every encoder weights file the metrics
    need exists (one error for all). Loads no model and imports no torch."""
    roles = {s.role for s in metric_specs(cfg.evaluate)}
    enc_cfg = OmegaConf.to_container(cfg.encoders, resolve=True)
    check_weights(enc_cfg, sorted(r for r in roles if role_config(enc_cfg, r) is not None))


def evaluate(cfg: DictConfig, images, leaves: list[Leaf], sweep_dir: Path) -> list[dict]:
    """``images`` is the images.parquet frame; returns rows of metrics.parquet.

    On the CPU, float reductions split over threads round differently (a batch of texts encoded with 1
    or 2 threads differs by ~1e-7), so the encoders run with ``evaluate.cpu_threads`` (default 1) torch
    threads whatever the launcher gave the process: every launcher writes the same bits, as training
    does with ``train.cpu_threads``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(cfg.evaluate.get("cpu_threads", 1)))
    try:
        return _evaluate(cfg, images, leaves, sweep_dir)
    finally:
        torch.set_num_threads(previous)


def _evaluate(cfg: DictConfig, images, leaves: list[Leaf], sweep_dir: Path) -> list[dict]:
    specs = metric_specs(cfg.evaluate)
    enc_cfg = OmegaConf.to_container(cfg.encoders, resolve=True)
    encoders = load_encoders(enc_cfg, {s.role for s in specs})
    skipped = sorted({s.metric.name for s in specs if s.role not in encoders})
    if skipped:
        log.info("encoders=%s has no encoder for %s: skipped", enc_cfg.get("name"), ", ".join(skipped))
    specs = [s for s in specs if s.role in encoders]
    images = images.reset_index(drop=True)
    x = Inputs(images, leaves, sweep_dir, encoders, int(enc_cfg.get("batch_size", 64)))
    by_name = {leaf.name: leaf for leaf in leaves}
    rows, refused = [], {}
    for (step, leaf, ptype), group in images.groupby(["step", "leaf", "prompt_type"], sort=True):
        idx = group.index.to_numpy()
        for spec in specs:
            m = spec.metric
            if spec.prompt_types is not None and ptype not in spec.prompt_types:
                continue
            if m.categories is not None and by_name[leaf].category not in m.categories:
                continue
            try:
                results = compute(spec, x, idx, int(step), by_name[leaf])
            except TooFewSamples as e:
                refused.setdefault(m.name, (0, str(e)))
                refused[m.name] = (refused[m.name][0] + 1, refused[m.name][1])
                continue
            for level, n, value in results:
                if not math.isfinite(value):  # never store NaN or inf: a bug to report, not a number
                    log.warning("%s on %s/%s step %s gave %r: row left out", m.name, leaf, ptype, step, value)
                    continue
                rows.append(
                    {
                        "step": int(step),
                        "leaf": leaf,
                        "prompt_type": ptype,
                        "metric": m.name,
                        "encoder": f"{enc_cfg.get('name')}-{spec.role}",
                        "level": level,
                        "n": int(n),
                        "value": float(value),
                    }
                )
    for name, (count, reason) in sorted(refused.items()):
        log.warning("%s refused on %d image set(s): %s", name, count, reason)
    return rows
