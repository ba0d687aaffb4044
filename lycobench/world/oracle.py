"""The oracle: a small multi-head CNN that reads a world image's ground truth back from its pixels.

Because every world image comes from a known scene, a classifier trained on renders can say which shapes,
colours, background, render style and concept an image shows. Heads (labels from ``scenes.labels``):

- shapes, colours: multi-label sets over the base shapes / colours of the base objects (concept figures are
  not base objects); scored as exact set matches
- count (0 or 1 base object), bg_colour, pattern
- leaf: "none" or the concept leaf ("name" or "name.sub-class"); ``concept`` is read from it

Images of any size are resized to 32x32 (the resolution the world's base model generates at).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .codec import codec_identity, codec_roundtrip, load_codec
from .concepts import WorldConcept, concept_scene, leaf_names, load_concepts
from .degrade import DEGRADATIONS, augment, degrade
from .scenes import Scene, labels, render_batch, sample_scene
from .vocab import BG_COLOURS, COLOURS, COUNTS, PATTERNS, SHAPES

INPUT = 32
WEIGHTS = Path(__file__).resolve().parent / "weights" / "oracle.safetensors"
MANIFEST = WEIGHTS.with_suffix(".json")
ROUNDTRIP_SHARE = 0.5
MULTI = ("shapes", "colours")
CHECK_SEED = 90_210  # held-out scenes: a seed stream training never uses


def head_classes(leaves: list[str]) -> dict[str, list[str]]:
    """Class names of every head, in output order."""
    return {
        "shapes": list(SHAPES),
        "colours": list(COLOURS),
        "count": [str(c) for c in COUNTS],
        "bg_colour": list(BG_COLOURS),
        "pattern": list(PATTERNS),
        "leaf": ["none", *leaves],
    }


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class OracleNet(nn.Module):
    """Five 3x3 conv blocks at 32, 16 and 8 px, then a small MLP with one linear output per head.

    The features are flattened (not pooled): positions and counts need to know where things are.
    """

    def __init__(
        self, head_sizes: dict[str, int], widths: tuple[int, int, int] = (32, 64, 128), hidden: int = 128
    ):
        super().__init__()
        a, b, c = widths
        pool = nn.MaxPool2d(2)
        self.features = nn.Sequential(
            _block(3, a), pool, _block(a, b), _block(b, b), pool, _block(b, c), _block(c, c), pool
        )
        self.trunk = nn.Sequential(
            nn.Flatten(), nn.Linear(c * (INPUT // 8) ** 2, hidden), nn.ReLU(inplace=True)
        )
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, n) for k, n in head_sizes.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(self.features((x - 0.5) / 0.25))
        return {k: head(h) for k, head in self.heads.items()}


def preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,32,32] in [0,1] (area downsampling, bilinear upsampling)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] > INPUT:
        return F.interpolate(x, size=(INPUT, INPUT), mode="area")
    if x.shape[-1] < INPUT:
        return F.interpolate(x, size=(INPUT, INPUT), mode="bilinear", align_corners=False)
    return x


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


def sample_oracle_scenes(
    n: int,
    seed: int,
    concepts: dict[str, WorldConcept],
    p_concept: float = 0.4,
) -> list[Scene]:
    """The oracle's data: base scenes with every colour-shape pair, and (p_concept) concept scenes in wide
    variation, every leaf equally often."""
    rng = np.random.default_rng(seed)
    leaves = [(c, leaf) for c in concepts.values() for leaf in c.leaves]
    out = []
    for _ in range(n):
        if rng.random() < p_concept:
            c, leaf = leaves[int(rng.integers(len(leaves)))]
            out.append(concept_scene(c, leaf, rng, oracle=True))
        else:
            out.append(sample_scene(rng, heldout=None))
    return out


def decode(logits: dict[str, torch.Tensor], classes: dict[str, list[str]]) -> dict[str, list]:
    """Predicted names per head, plus ``concept`` (read from the leaf).

    Sets are read together with the count head: labels above 0.5, at most ``count`` of them, and at least
    the most likely one when there is any base object (a scene with objects has a shape and a colour).
    """
    out: dict[str, list] = {}
    for k, v in logits.items():
        if k not in MULTI:
            out[k] = [classes[k][j] for j in v.argmax(1).numpy()]
    out["count"] = [int(c) for c in out["count"]]
    for k in MULTI:
        prob = torch.sigmoid(logits[k]).numpy()
        sets = []
        for row, n in zip(prob, out["count"]):
            ranked = np.argsort(-row, kind="stable")[:n]
            chosen = [j for j in ranked if row[j] > 0.5] or list(ranked[:1])
            sets.append(frozenset(classes[k][j] for j in chosen))
        out[k] = sets
    out["concept"] = [leaf.split(".")[0] for leaf in out["leaf"]]
    return out


def accuracy(pred: dict[str, list], scenes: list[Scene]) -> dict[str, float]:
    """Per-attribute accuracy over the scenes where the attribute is defined."""
    truth = [labels(s) for s in scenes]
    out = {}
    for k in [*head_classes([]).keys(), "concept"]:
        pairs = [(p, t[k]) for p, t in zip(pred[k], truth) if t[k] is not None]
        out[k] = float(np.mean([p == t for p, t in pairs])) if pairs else float("nan")
    return out


class Oracle:
    """The trained oracle: ``Oracle.load().predict(images)``."""

    def __init__(self, net: OracleNet, manifest: dict):
        self.net = net.eval()
        self.manifest = manifest
        self.classes: dict[str, list[str]] = manifest["heads"]

    @classmethod
    def load(cls, weights: Path | str = WEIGHTS, manifest: dict | None = None) -> Oracle:
        """Load shipped (or given) weights; the manifest is read from the .json beside them unless given."""
        from safetensors.torch import load_file

        weights = Path(weights)
        manifest_path = weights.with_suffix(".json")
        if not weights.exists() or (manifest is None and not manifest_path.exists()):
            raise FileNotFoundError(
                f"oracle weights not found at {weights} (+ .json); run `python -m lycobench world oracle-train`"
            )
        if manifest is None:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        net = OracleNet(
            {k: len(v) for k, v in manifest["heads"].items()}, tuple(manifest["widths"]), manifest["hidden"]
        )
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
        net.load_state_dict(state)
        return cls(net, manifest)

    @torch.no_grad()
    def logits(self, images: np.ndarray, batch: int = 512) -> dict[str, torch.Tensor]:
        parts = [self.net(preprocess(images[i : i + batch])) for i in range(0, len(images), batch)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def predict(self, images: np.ndarray) -> dict[str, list]:
        """Names per head for uint8 images [N,H,W,3] of any size (see ``decode``)."""
        return decode(self.logits(images), self.classes)

    def check_leaves(self, concepts: dict[str, WorldConcept]) -> bool:
        """Raise if the concept leaves changed since training; False if only their drawings changed."""
        current = leaf_names(concepts)
        if current != self.classes["leaf"][1:]:
            raise ValueError(
                "the oracle was trained on other concepts than concepts/world now defines "
                f"({self.classes['leaf'][1:]} vs {current}); run `python -m lycobench world oracle-train`"
            )
        return self.manifest.get("concepts_sha256") == concepts_digest(concepts)


def concepts_digest(concepts: dict[str, WorldConcept]) -> str:
    """A hash of the concept definitions the oracle was trained on (their parsed YAML, less ``studied``:
    which concepts the studies use does not change what the oracle learned)."""
    specs = [{k: v for k, v in c.spec.items() if k != "studied"} for c in concepts.values()]
    blob = json.dumps(specs, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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


def detection_rate(oracle: Oracle, images: np.ndarray, concept: str) -> float:
    """Share of ``images`` in which the oracle sees ``concept``."""
    return round(float(np.mean([c == concept for c in oracle.predict(images)["concept"]])), 4)


def vae_roundtrip(vae, concept: WorldConcept, oracle: Oracle) -> dict[str, float]:
    """Detection on the concept's training images, as rendered and after a trip through the model's VAE
    (latent mean, decoded): the second is the ceiling of any fine-tune's detection rate, since every image
    the model draws comes out of that decoder."""
    from .concepts import training_scenes
    from .pretrain.data import render_32

    images = render_32([scene for _, _, scene in training_scenes(concept)])
    return {
        "training_images": detection_rate(oracle, images, concept.name),
        "vae_roundtrip": detection_rate(oracle, codec_roundtrip(vae, images), concept.name),
    }


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
) -> dict:
    """Render a training set, train the oracle, measure it on the held-out check set, write weights + manifest.

    ``roundtrip_share`` of the training images are passed through the world base model's autoencoder
    (``vae_folder``, default the shipped one): every image the generator draws comes out of that decoder,
    which smooths small parts and corners, and the oracle must read concepts as the generator can draw
    them. The check set is measured clean, degraded and after the same round trip (``vae``)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    concepts = concepts if concepts is not None else load_concepts()
    classes = head_classes(leaf_names(concepts))
    t0, c0 = time.time(), time.process_time()  # CPU time too: wall time depends on what else runs
    scenes = sample_oracle_scenes(n_images, seed, concepts)
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
    }
    mtmp = out.with_suffix(".json.tmp")
    mtmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    mtmp.replace(out.with_suffix(".json"))
    return manifest
