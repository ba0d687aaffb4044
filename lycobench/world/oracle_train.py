"""Training the oracle and measuring it on held-out scenes (``world oracle-train`` / ``world oracle-check``).

Training renders scenes of the base world and of every concept (the oracle's sampler), passes a share of
them through the base model's autoencoder, trains ``OracleNet`` on all heads, saves fp16 weights with a
manifest, and measures the saved weights clean, degraded and after the autoencoder round trip.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .codec import codec_identity, codec_roundtrip, load_codec
from .concepts import WorldConcept, concept_scene, leaf_names, load_concepts
from .degrade import DEGRADATIONS, augment, degrade
from .oracle import (
    INPUT,
    MULTI,
    WEIGHTS,
    Oracle,
    OracleNet,
    concepts_digest,
    detection_rate,
    head_classes,
    preprocess,
    sample_oracle_scenes,
)
from .render import Part
from .scenes import NEAR_MISS, Scene, labels, render_batch

CHECK_SEED = 90_210  # held-out scenes: a seed stream training never uses
ROUNDTRIP_SHARE = 0.5  # of the training images pass through the autoencoder
NEAR_MISS_SHARE = 0.1  # of the training images are concept figures taken apart, labelled "no concept"


def _shifted(part: Part, dx: float, dy: float) -> Part:
    """``part`` moved by (dx, dy) image units (its shading frame with it)."""
    args = list(part.args)
    n_xy = len(args) if part.kind == "poly" else 4 if part.kind == "capsule" else 2
    for i in range(0, n_xy, 2):
        args[i] += dx
        args[i + 1] += dy
    fx, fy, fr = part.frame
    return replace(part, args=tuple(args), frame=(fx + dx, fy + dy, fr))


def near_miss(concepts: dict[str, WorldConcept], rng: np.random.Generator) -> Scene:
    """A character's or object's figure taken apart: every part moves 0.1-0.25 of the image in its own
    direction, at least 0.15 from where any other part moves. It shows the concept's colours and pieces but
    not its figure, which is what a fine-tune that failed often draws; the oracle learns to call it no
    concept (``NEAR_MISS``) instead of reading a concept off colours and fragments. No part is dropped: a
    figure whose small parts merged into the body (buns into the head, at 32 px) is still the concept."""
    figures = [c for c in concepts.values() if c.category in ("character", "object")]
    c = figures[int(rng.integers(len(figures)))]
    scene = concept_scene(c, c.leaves[int(rng.integers(len(c.leaves)))], rng, oracle=True)
    n = len(scene.figure)
    for _ in range(100):  # moves far enough from one another that the figure does not survive
        angle, dist = rng.uniform(0, 2 * math.pi, n), rng.uniform(0.1, 0.25, n)
        d = np.stack([dist * np.cos(angle), dist * np.sin(angle)], 1)
        gaps = np.linalg.norm(d[:, None] - d[None], axis=-1) + np.eye(n)
        if gaps.min() >= 0.15:
            break
    moved = tuple(_shifted(part, float(dx), float(dy)) for part, (dx, dy) in zip(scene.figure, d))
    return replace(scene, figure=moved, concept=None, leaf=None, category=NEAR_MISS, tags=())


def with_near_misses(
    scenes: list[Scene], share: float, seed: int, concepts: dict[str, WorldConcept]
) -> list[Scene]:
    """``scenes`` with a seeded ``share`` of them replaced by near misses."""
    rng = np.random.default_rng(seed)
    out = list(scenes)
    for i in rng.permutation(len(scenes))[: int(round(share * len(scenes)))]:
        out[int(i)] = near_miss(concepts, rng)
    return out


def encode_labels(scenes: list[Scene], classes: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Targets per head: class index (-1 when undefined) or a multi-hot row (all -1 when undefined)."""
    out = {
        k: np.full((len(scenes), len(v)) if k in MULTI else len(scenes), -1, np.int64)
        for k, v in classes.items()
    }
    index = {k: {name: i for i, name in enumerate(v)} for k, v in classes.items()}
    for i, s in enumerate(scenes):
        lab = labels(s)
        for k in classes:
            value = lab[k]
            if value is None:
                continue
            if k in MULTI:
                out[k][i] = 0
                out[k][i, [index[k][v] for v in value]] = 1
            else:
                out[k][i] = index[k][str(value)]
    return out


def accuracy(pred: dict[str, list], scenes: list[Scene]) -> dict[str, float]:
    """Per-attribute accuracy over the scenes where the attribute is defined."""
    truth = [labels(s) for s in scenes]
    out = {}
    for k in [*head_classes([]).keys(), "concept"]:
        pairs = [(p, t[k]) for p, t in zip(pred[k], truth) if t[k] is not None]
        out[k] = float(np.mean([p == t for p, t in pairs])) if pairs else float("nan")
    return out


def _loss(out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    total = torch.zeros(())
    for k, logit in out.items():
        t = target[k]
        if k in MULTI:
            mask = (t[:, 0] >= 0).float()[:, None]
            bce = F.binary_cross_entropy_with_logits(logit, t.clamp_min(0).float(), reduction="none")
            total = total + 2.0 * (bce * mask).sum() / mask.sum().clamp_min(1) / logit.shape[1] * 4
        elif (t >= 0).any():
            total = total + F.cross_entropy(logit, t, ignore_index=-1)
    return total


def evaluate(oracle: Oracle, scenes: list[Scene], images: np.ndarray) -> dict[str, float]:
    return accuracy(oracle.predict(images), scenes)


def check_set(n: int, concepts: dict[str, WorldConcept], size: int = 64) -> tuple[list[Scene], np.ndarray]:
    """The held-out check set: scenes from a seed training never uses, rendered like exported images."""
    scenes = sample_oracle_scenes(n, CHECK_SEED, concepts)
    return scenes, render_batch(scenes, size)


def evaluate_all(
    oracle: Oracle, scenes: list[Scene], images: np.ndarray, vae=None
) -> dict[str, dict[str, float]]:
    """Clean accuracy, accuracy under each named degradation and (with ``vae``) after an autoencoder round
    trip at 32 px."""
    out = {"clean": evaluate(oracle, scenes, images)}
    for kind in DEGRADATIONS:
        out[kind] = evaluate(oracle, scenes, degrade(images, kind))
    if vae is not None:
        out["vae"] = evaluate(
            oracle,
            scenes,
            codec_roundtrip(vae, (preprocess(images) * 255).round().byte().permute(0, 2, 3, 1).numpy()),
        )
    return out


def near_miss_rejected(
    oracle: Oracle, n: int, concepts: dict[str, WorldConcept], vae=None
) -> dict[str, float]:
    """Share of ``n`` held-out near misses that the oracle calls no concept, as rendered and (with ``vae``)
    after the autoencoder round trip."""
    rng = np.random.default_rng(CHECK_SEED + 1)
    images = render_batch([near_miss(concepts, rng) for _ in range(n)], INPUT)
    out = {"n": n, "clean": detection_rate(oracle, images, "none")}
    if vae is not None:
        out["vae"] = detection_rate(oracle, codec_roundtrip(vae, images), "none")
    return out


def train(
    out: Path | str = WEIGHTS,
    seed: int = 0,
    n_images: int = 80_000,
    steps: int = 2_000,
    batch: int = 128,
    lr: float = 2e-3,
    n_check: int = 3_000,
    concepts: dict[str, WorldConcept] | None = None,
    log: Callable[[str], None] = print,
    vae_folder: Path | str | None = None,
    roundtrip_share: float = ROUNDTRIP_SHARE,
    near_miss_share: float = NEAR_MISS_SHARE,
) -> dict:
    """Render a training set, train the oracle, measure it on the held-out check set, write weights + manifest.

    ``roundtrip_share`` of the training images are passed through the world base model's autoencoder
    (``vae_folder``, default the shipped one): every image the generator draws comes out of that decoder,
    which smooths small parts and corners, and the oracle must read concepts as the generator can draw
    them. ``near_miss_share`` of them are near misses (``near_miss``). The check set is measured clean,
    degraded and after the same round trip (``vae``); held-out near misses say how often the oracle
    rejects one (``near_miss_rejected``)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    concepts = concepts if concepts is not None else load_concepts()
    classes = head_classes(leaf_names(concepts))
    t0, c0 = time.time(), time.process_time()  # CPU time too: wall time depends on what else runs
    scenes = with_near_misses(
        sample_oracle_scenes(n_images, seed, concepts), near_miss_share, seed + 3, concepts
    )
    images, chunk = [], 4096
    for i in range(
        0, n_images, chunk
    ):  # rendered at 32 px directly: the same box filter as 64 px renders downsampled, at a quarter of the cost
        images.append(render_batch(scenes[i : i + chunk], INPUT))
        log(f"rendered {min(i + chunk, n_images)}/{n_images} training images ({time.time() - t0:.0f} s)")
    images = np.concatenate(images)
    vae = load_codec(vae_folder)
    tripped = np.random.default_rng(seed + 2).permutation(n_images)[: int(round(roundtrip_share * n_images))]
    images[tripped] = codec_roundtrip(vae, images[tripped])
    log(f"{len(tripped)} training images passed through the autoencoder ({time.time() - t0:.0f} s)")
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8
    targets = {k: torch.from_numpy(v) for k, v in encode_labels(scenes, classes).items()}
    t_render, c_render = time.time() - t0, time.process_time() - c0

    widths, hidden = (32, 64, 128), 128
    net = OracleNet({k: len(v) for k, v in classes.items()}, widths, hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    g = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(n_images, generator=g)
    pos, t1, c1 = 0, time.time(), time.process_time()
    net.train()
    for step in range(steps):
        if pos + batch > n_images:
            order, pos = torch.randperm(n_images, generator=g), 0
        idx = order[pos : pos + batch]
        pos += batch
        x = augment(x_all[idx].float() / 255.0, g)
        loss = _loss(net(x), {k: v[idx] for k, v in targets.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            el = time.time() - t1
            log(
                f"step {step + 1}/{steps} loss {loss.item():.4f} ({el:.0f} s, ~{el / (step + 1) * (steps - step - 1):.0f} s left)"
            )
    t_train, c_train = time.time() - t1, time.process_time() - c1

    # save in fp16, then measure the saved weights themselves
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().half() if v.is_floating_point() else v).contiguous()
        for k, v in net.state_dict().items()
    }
    manifest = {
        "format": 1,
        "input_size": INPUT,
        "widths": list(widths),
        "hidden": hidden,
        "heads": classes,
        "multi_label": list(MULTI),
        "seed": seed,
        "concepts_sha256": concepts_digest(concepts),
        "train": {
            "images": n_images,
            "steps": steps,
            "batch": batch,
            "lr": lr,
            "optimizer": "AdamW (weight decay 1e-4), warmup 5%, cosine",
            "concept_share": 0.4,
            "near_miss_share": near_miss_share,
            "augment": "p=0.5 per image: resample through 12-24 px, blur sigma<=1.2 px, colour gain/offset/saturation, noise",
            "autoencoder_roundtrip": {"share": roundtrip_share, "vae": codec_identity(vae_folder)},
            "render_seconds": round(t_render, 1),
            "render_cpu_seconds": round(c_render, 1),
            "train_seconds": round(t_train, 1),
            "train_cpu_seconds": round(c_train, 1),
            "threads": torch.get_num_threads(),
        },
    }
    tmp = out.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(out)
    out.chmod(0o644)  # safetensors writes owner-only files; the shipped weights are for everyone
    manifest["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    oracle = Oracle.load(out, manifest)
    log(f"evaluating on {n_check} held-out scenes (clean and {len(DEGRADATIONS)} degradations)")
    check_scenes, check_images = check_set(n_check, concepts)
    manifest["accuracy"] = {
        "n_check": n_check,
        "check_seed": CHECK_SEED,
        **{
            k: {a: round(v, 4) for a, v in acc.items()}
            for k, acc in evaluate_all(oracle, check_scenes, check_images, vae).items()
        },
        "near_miss_rejected": near_miss_rejected(oracle, n_check // 5, concepts, vae),
    }
    mtmp = out.with_suffix(".json.tmp")
    mtmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    mtmp.replace(out.with_suffix(".json"))
    return manifest
