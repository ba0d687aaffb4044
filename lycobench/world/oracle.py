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
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .codec import codec_roundtrip
from .concepts import WorldConcept, concept_scene, leaf_names
from .scenes import Scene, sample_scene
from .vocab import BG_COLOURS, COLOURS, COUNTS, PATTERNS, SHAPES

INPUT = 32
WEIGHTS = Path(__file__).resolve().parent / "weights" / "oracle.safetensors"
MANIFEST = WEIGHTS.with_suffix(".json")
MULTI = ("shapes", "colours")


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


# concept YAML keys that leave every render the oracle learns from unchanged (captions, which concepts the
# studies train, the content of a style's training images): a change to them needs no oracle retrain
TRAINING_ONLY_KEYS = ("studied", "bare_captions", "subjects")


def concepts_digest(concepts: dict[str, WorldConcept]) -> str:
    """A hash of the concept definitions the oracle was trained on (their parsed YAML, less what does not
    change the pictures it learns from: which concepts the studies use, and how their captions read)."""
    specs = [{k: v for k, v in c.spec.items() if k not in TRAINING_ONLY_KEYS} for c in concepts.values()]
    blob = json.dumps(specs, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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
