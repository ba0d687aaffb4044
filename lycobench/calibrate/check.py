"""``python -m lycobench world check``: measure the world's base model, its fine-tunability and encoders.

- base: oracle-judged accuracy of base-model samples for prompts pretraining never showed (captions of
  scenes from a seed stream pretraining does not use), per attribute; ``heldout_combos``: single objects
  in a held-out colour-shape pair, right when both shape and colour are read back
- concepts: the oracle's detection rate of a concept in images for its trigger prompt, on the base model
  and after a LoRA fine-tune with the benchmark's own training code (conf/adapter/lora.yaml defaults)
- clip_retrieval_at_10 and dino_knn_accuracy of the shipped encoders (``measure.py``)
Writes JSON and, beside it, a PNG grid of base samples with their prompts.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..world.captions import caption
from ..world.concepts import load_concepts, studied_concepts
from ..world.oracle import detection_rate, vae_roundtrip
from ..world.scenes import Scene, labels, sample_scenes

if TYPE_CHECKING:
    from omegaconf import DictConfig

CHECK_SEED = 31_337  # prompt scenes: pretraining draws its scenes from seeds 0 and 1_000_003
SAMPLER = {"sampler": "dpmpp", "steps": 20, "guidance_scale": 4.0}
IMAGE_SEED = 1000
TRAIN_GROUP = "quick"  # the default study's training recipe (conf/train/quick.yaml)
PER_CONCEPT = 48  # trigger images behind each detection rate
GENERATE_GROUP = "quick"  # concept images are sampled as the default study samples them (conf/generate/)


def shown_path(folder: Path | None) -> str | None:
    """A model folder as results show it: relative to the repository when inside it (no machine paths in
    published JSON), else its name."""
    if folder is None:
        return None
    root = Path(__file__).resolve().parents[2]
    try:
        return Path(folder).resolve().relative_to(root).as_posix()
    except ValueError:
        return Path(folder).name


def load_pipe(folder: Path):
    from ..sd_pipeline import load_pipeline

    return load_pipeline(folder)


@torch.no_grad()
def sample(
    pipe, prompts: list[str], seed: int = IMAGE_SEED, batch: int = 32, sampler: dict | None = None
) -> np.ndarray:
    """uint8 [N,32,32,3]; image i uses seed ``seed + i`` (as the benchmark's prompt files do); ``sampler``:
    sampler, steps and guidance_scale (default ``SAMPLER``)."""
    from ..generate import configure_sampler

    sampler = sampler or SAMPLER
    configure_sampler(pipe, sampler["sampler"])
    out = []
    for s in range(0, len(prompts), batch):
        chunk = prompts[s : s + batch]
        images = pipe(
            prompt=chunk,
            generator=[torch.Generator().manual_seed(seed + s + i) for i in range(len(chunk))],
            num_inference_steps=sampler["steps"],
            guidance_scale=sampler["guidance_scale"],
            output_type="np",
        ).images
        out.append((np.clip(images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


def base_prompts(n: int, n_heldout: int) -> tuple[list[Scene], list[str], list[bool]]:
    """(scenes, captions, is_heldout): n ordinary scenes, then n_heldout single objects in held-out pairs."""
    rng = np.random.default_rng(CHECK_SEED)
    scenes = sample_scenes(n, CHECK_SEED) + sample_scenes(n_heldout, CHECK_SEED + 1, heldout=True)
    return scenes, [caption(s, rng) for s in scenes], [False] * n + [True] * n_heldout


def score_base(pred: dict, scenes: list[Scene], heldout: list[bool]) -> dict[str, float]:
    """Per-attribute accuracy over the ordinary prompts; held-out pairs right when shape and colour are."""
    keys = {"shape": "shapes", "color": "colours", "background": "bg_colour", "pattern": "pattern"}
    hits: dict[str, list[bool]] = {k: [] for k in [*keys, "heldout_combos"]}
    for i, (scene, held) in enumerate(zip(scenes, heldout)):
        truth = labels(scene)
        if held:
            hits["heldout_combos"].append(
                pred["shapes"][i] == truth["shapes"] and pred["colours"][i] == truth["colours"]
            )
            continue
        for name, head in keys.items():
            t = truth[head]
            if t is None:
                continue
            hits[name].append(pred[head][i] == t)
    return {k: round(float(np.mean(v)), 4) for k, v in hits.items() if v}


def grid_png(images: np.ndarray, prompts: list[str], path: Path, scale: int = 3, rows: int = 24) -> Path:
    """Images (upscaled) in a column with their prompts beside them, several columns."""
    from PIL import Image, ImageDraw

    n = min(len(images), rows * 2)
    side, text_w = images.shape[1] * scale, 420
    cols = (n + rows - 1) // rows
    sheet = Image.new("RGB", (cols * (side + text_w), min(n, rows) * (side + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x, y = (i // rows) * (side + text_w), (i % rows) * (side + 4)
        sheet.paste(Image.fromarray(images[i]).resize((side, side), Image.NEAREST), (x, y))
        draw.text((x + side + 6, y + side // 2 - 6), prompts[i][:70], fill="black")
    sheet.save(path)
    return path


SHEET_PER_ROW = 8  # trigger images per concept, adapter and checkpoint in the concepts sheet


def concepts_png(rows: list[tuple[str, np.ndarray]], path: Path, scale: int = 3) -> Path:
    """One row per (label, images): what each fine-tune draws for a concept's trigger prompt, checkpoint by
    checkpoint, so a rate can be read against the pictures behind it."""
    from PIL import Image, ImageDraw

    side, text_w = 32 * scale, 260
    sheet = Image.new("RGB", (text_w + SHEET_PER_ROW * (side + 2), len(rows) * (side + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows):
        y = r * (side + 4)
        draw.text((4, y + side // 2 - 6), label, fill="black")
        for i, img in enumerate(images[:SHEET_PER_ROW]):
            sheet.paste(
                Image.fromarray(img).resize((side, side), Image.NEAREST), (text_w + i * (side + 2), y)
            )
    sheet.save(path)
    return path


def trigger_prompts(concept, n: int) -> list[str]:
    """The benchmark's trigger prompt (the descriptor) of every leaf, ``n`` images in all (leaves alike)."""
    per_leaf = -(-n // len(concept.leaves))
    return [concept.descriptor(leaf) for leaf in concept.leaves for _ in range(per_leaf)]


def leaf_rates(predicted_leaves: list[str], concept, n: int) -> dict[str, float]:
    """Per sub-class leaf, the share of its own trigger images (``trigger_prompts`` order) in which the oracle
    reads that leaf, as a study scores it: a catch-all leaf (no keyword) counts any leaf of its concept."""
    from ..metrics.oracle_scores import concept_detection  # the study's own metric

    per_leaf = -(-n // len(concept.leaves))
    every = {concept.leaf_name(lf) for lf in concept.leaves}
    out = {}
    for i, leaf in enumerate(concept.leaves):
        accepted = {concept.leaf_name(leaf)} if concept.subclasses.get(leaf) else every
        mine = predicted_leaves[i * per_leaf : (i + 1) * per_leaf]
        out[concept.leaf_name(leaf)] = round(concept_detection(mine, accepted), 4)
    return out


def fine_tune(
    model_folder: Path,
    names: list[str],
    work: Path,
    fast: bool,
    adapter: str = "lora",
    overrides: tuple[str, ...] = (),
    train_group: str = TRAIN_GROUP,
) -> tuple[dict[int, Path], DictConfig]:
    """``adapter``'s default config (the paper's, e.g. LoRA dim 8 alpha 4) trained on the exported world
    concepts ``names`` (one model for all of them, as a study trains) with lycobench.train's ``train`` and
    the world's training recipe (``overrides``: Hydra overrides on top, e.g. ``train.exposures_per_epoch=80``
    to calibrate the recipe). Returns every checkpoint ({step: path}) and the composed config."""
    from .. import data as lb_data
    from ..config import compose
    from ..models import model_identity
    from ..store import content_key
    from ..train import train
    from ..world.export import export

    folders = export(work / "concepts", names)
    config = [
        "model=world",
        f"model.path={model_folder}",
        f"adapter={adapter}",
        "target=attn-mlp",
        f"train={train_group}",
        f"generate={GENERATE_GROUP}",
    ]
    if fast:
        config += ["train.epochs=1", "train.checkpoint_epochs=[1]"]
    cfg = compose([*config, *overrides])
    stem = f"{'+'.join(names)}-{adapter}"
    saved = train(
        cfg, lb_data.load_concepts([str(f) for f in folders]), lambda step: work / f"{stem}-{step}.safetensors",
        work / f"{stem}-log.csv", work / "cache", content_key(model_identity(cfg.model)),
    )  # fmt: skip
    return saved, cfg


def _tuned_curves(
    model_folder, oracle, group, prompts, concepts, work, fast, adapter, overrides, train_group
):
    """One fine-tune of ``group`` with ``adapter``: per concept its detection curve over the checkpoints, its
    per-leaf curves (sub-classes), the checkpoint steps, sheet rows and the study's sampler."""
    from omegaconf import OmegaConf

    from .. import adapters as adapter_io

    saved, cfg = fine_tune(model_folder, group, work, fast, adapter, overrides, train_group)
    sampler = {k: cfg.generate[k] for k in ("sampler", "steps", "guidance_scale")}
    curves = {name: [] for name in group}
    leaf_curves: dict[str, dict[str, list[float]]] = {name: {} for name in group}
    sheet = []
    for step in sorted(saved):
        pipe = load_pipe(model_folder)
        adapter_io.load(
            pipe, saved[step], OmegaConf.to_container(cfg.adapter), OmegaConf.to_container(cfg.target), 1.0
        )  # fmt: skip
        for name in group:
            images = sample(pipe, prompts[name], sampler=sampler)
            read = oracle.predict(images)
            per_leaf = -(-len(images) // len(concepts[name].leaves))  # a few images of every leaf
            picks = sorted(range(len(images)), key=lambda k: (k % per_leaf, k))[:SHEET_PER_ROW]
            sheet.append((name, step, images[picks]))
            curves[name].append(round(float(np.mean([c == name for c in read["concept"]])), 4))
            if len(concepts[name].leaves) > 1:
                for leaf, rate in leaf_rates(read["leaf"], concepts[name], len(prompts[name])).items():
                    leaf_curves[name].setdefault(leaf, []).append(rate)
    return curves, leaf_curves, sorted(saved), sheet, sampler


def _mean_curve(curves: list[list[float]]) -> list[float]:
    return [round(float(np.mean(points)), 4) for points in zip(*curves)]


def concept_scores(
    model_folder: Path,
    oracle,
    names: list[str],
    per_concept: int,
    work: Path,
    fast: bool,
    adapter_names: tuple[str, ...] = ("lora",),
    overrides: tuple[str, ...] = (),
    together: bool = False,
    train_group: str = TRAIN_GROUP,
    seeds: tuple[int, ...] = (),
) -> tuple[dict, list]:
    """Per concept: detection in base images and at every checkpoint of a fine-tune with each of
    ``adapter_names`` (``curve_by_adapter``: one rate per checkpoint, the learning curve; ``tuned``: the first
    adapter's last checkpoint, LoRA by default; ``tuned_by_adapter``: every adapter's last checkpoint). Each
    concept is fine-tuned alone, or (``together``) one model per adapter learns all of ``names`` at once, as
    in a study; ``train_s`` is then that shared run's time. Every rate rests on ``per_concept`` images; a
    concept with sub-classes also gets ``leaf_curves_by_adapter``, each leaf on its own prompt's images
    (the study's per-leaf criterion, which the concept-level rate can hide). With ``seeds`` each adapter is
    trained once per training seed: the curves are the means over seeds, ``curve_by_seed`` keeps each one
    (one seed's rate moves by about 0.15-0.2 between seeds on a half-learned concept)."""
    concepts = load_concepts()
    base = load_pipe(model_folder)
    prompts = {name: trigger_prompts(concepts[name], per_concept) for name in names}
    groups = [names] if together else [[name] for name in names]
    runs = [(s, (*overrides, f"seed={s}")) for s in seeds] or [(None, overrides)]
    curves: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    by_seed: dict[str, dict[str, dict[str, list[float]]]] = {name: {} for name in names}
    leaf_curves: dict[str, dict[str, dict[str, list[float]]]] = {name: {} for name in names}
    steps: dict[str, dict[str, list[int]]] = {name: {} for name in names}
    seconds: dict[str, dict[str, int]] = {name: {} for name in names}
    sheet: list[tuple[str, np.ndarray]] = []  # (label, first trigger images) per concept, adapter, checkpoint
    for group in groups:
        for adapter in adapter_names:
            t0 = time.time()
            measured = []
            for seed, run_overrides in runs:
                c, lc, st, rows, study_sampler = _tuned_curves(
                    model_folder, oracle, group, prompts, concepts, work, fast, adapter, run_overrides, train_group
                )  # fmt: skip
                measured.append((seed, c, lc))
                tag = "" if seed is None else f" seed {seed}"
                sheet += [(f"{name} {adapter}{tag} step {step}", images) for name, step, images in rows]
            for name in group:
                steps[name][adapter] = st
                curves[name][adapter] = _mean_curve([c[name] for _, c, _ in measured])
                if seeds:
                    by_seed[name][adapter] = {str(s): c[name] for s, c, _ in measured}
                for leaf in measured[0][2][name]:
                    leaf_curves[name].setdefault(adapter, {})[leaf] = _mean_curve(
                        [lc[name][leaf] for *_, lc in measured]
                    )
                seconds[name][adapter] = round(
                    time.time() - t0
                )  # a shared run's time counts for each concept
    out = {}
    for name in names:
        c, first = concepts[name], adapter_names[0]
        out[name] = {"category": c.category, "base": detection_rate(oracle, sample(base, prompts[name], sampler=study_sampler), name),
                     "tuned": curves[name][first][-1],
                     "tuned_by_adapter": {a: v[-1] for a, v in curves[name].items()},
                     "curve_by_adapter": curves[name], "checkpoint_steps": steps[name],
                     **({"curve_by_seed": by_seed[name]} if seeds else {}),
                     **({"leaf_curves_by_adapter": leaf_curves[name]} if leaf_curves[name] else {}),
                     **vae_roundtrip(base.vae, c, oracle), "prompts": sorted(set(prompts[name])),
                     "images": len(prompts[name]), "train_s": seconds[name], "sampler": study_sampler}  # fmt: skip
    return out, sheet


PARTS = ("base", "concepts", "encoders")


def concepts_to_check(concept_names: tuple[str, ...], fast: bool) -> list[str]:
    """The concepts named on the command line, else the studied ones (their first with ``fast``)."""
    if concept_names:
        return list(concept_names)
    return studied_concepts()[:1] if fast else studied_concepts()


def run_check(
    out: Path,
    model_folder: Path | None = None,
    fast: bool = False,
    threads: int = 2,
    oracle_path: Path | None = None,
    parts: tuple[str, ...] = PARTS,
    adapter_names: tuple[str, ...] = ("lora",),
    overrides: tuple[str, ...] = (),
    concept_names: tuple[str, ...] = (),
    together: bool = False,
    train_group: str = TRAIN_GROUP,
    seeds: tuple[int, ...] = (),
) -> dict:
    """Measure ``parts`` (default all) and write the JSON (+ PNG grid of base samples when base is measured).
    Parts are independent: separate processes may measure them and their JSON objects be merged."""
    from ..models import world_folder
    from ..world.clip_dino import load_world_clip, load_world_dino
    from ..world.oracle import Oracle
    from ..world.pretrain.measure import clip_retrieval_at_10, dino_knn

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    t0 = time.time()
    needs_model = bool({"base", "concepts"} & set(parts))
    folder = world_folder(str(model_folder) if model_folder else None) if needs_model else None
    oracle = Oracle.load(oracle_path) if oracle_path else Oracle.load()
    n, n_held = (8, 4) if fast else (200, 48)
    result: dict = {}
    if "base" in parts:
        scenes, prompts, held = base_prompts(n, n_held)
        images = sample(load_pipe(folder), prompts)
        result["base"] = score_base(oracle.predict(images), scenes, held)
    if "concepts" in parts:
        with tempfile.TemporaryDirectory(prefix="world-check-") as tmp:
            names = concepts_to_check(concept_names, fast)
            result["concepts"], sheet = concept_scores(
                folder, oracle, names, 2 if fast else PER_CONCEPT, Path(tmp), fast, adapter_names, overrides,
                together, train_group, seeds,
            )  # fmt: skip
    if "encoders" in parts:
        result["clip_retrieval_at_10"] = round(
            clip_retrieval_at_10(load_world_clip(), n=40 if fast else 500), 4
        )
        knn = dino_knn(load_world_dino(), per_concept=3, queries=3) if fast else dino_knn(load_world_dino())
        result["dino_knn_accuracy"] = round(knn["accuracy"], 4)
        result["dino_knn_by_category"] = knn["by_category"]
    # the oracle decides every base and concept rate: its weights' hash is part of the experiment
    result["settings"] = {"model": shown_path(folder), "oracle": oracle.manifest.get("sha256"), "prompts": n, "heldout_prompts": n_held, "sampler": SAMPLER,
                          "train": train_group, "adapters": list(adapter_names), "overrides": list(overrides), "seeds": list(seeds) or None, "together": together, "fast": fast, "parts": list(parts),
                          "seconds": round(time.time() - t0)}  # fmt: skip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = out.with_name(out.name + ".tmp")
    tmp_file.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_file, out)
    if "base" in parts:
        grid_png(images, prompts, out.with_suffix(".png"))
    if "concepts" in parts and sheet:
        concepts_png(sheet, out.with_name(out.stem + "-concepts.png"))
    return result
