"""The world CLIP: an open_clip image-text model trained contrastively on renders and class-word captions.

It is a metric encoder (CLIP score, retrieval), distinct from the generator's text encoder, so that the
model being measured is not scored by its own conditioning. Saved in open_clip's folder layout
(``open_clip_config.json`` + ``open_clip_model.safetensors``, fp16), loadable with
``open_clip.create_model_and_transforms('local-dir:<folder>')``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .views import class_caption, encoder_data, to_float

MODEL_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 96, "patch_size": 4, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
# open_clip's default CLIP normalisation; images are 32 px already (the world's resolution)
PREPROCESS_CFG = {
    "size": 32,
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
WEIGHTS_NAME = "open_clip_model.safetensors"


def build(seed: int):
    """A seeded open_clip model of MODEL_CFG, its tokenizer, and the config name it is registered under."""
    import tempfile

    import open_clip

    name = "lycobench-world-clip"
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / f"{name}.json").write_text(json.dumps(MODEL_CFG))
        open_clip.add_model_config(d)
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None)
    return model, open_clip.get_tokenizer(name)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[N,3,32,32] in [0,1] -> CLIP-normalised (what open_clip's transform does after ToTensor)."""
    mean = torch.tensor(PREPROCESS_CFG["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS_CFG["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


def train_clip(
    n_images: int, steps: int, seed: int, batch: int = 128, lr: float = 1e-3,
    log: Callable[[dict], None] | None = None,
):  # fmt: skip
    """Symmetric InfoNCE over (render, caption) pairs; a fresh caption per image at every step."""
    from ...world.concepts import load_concepts
    from ..degrade import augment

    model, tokenizer = build(seed)
    scenes, images = encoder_data(n_images, seed)
    concepts = load_concepts()
    rng = np.random.default_rng(seed + 5)
    g = torch.Generator().manual_seed(seed + 6)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warm = min(100, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
        ),
    )
    model.train()
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=g).numpy()
        texts = [class_caption(scenes[i], concepts, rng) for i in idx]
        x = normalise(augment(to_float(images[idx]), g, p=0.5))
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        # identical captions in a batch are true pairs too: soft targets over equal texts
        same = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log is not None and (step % 25 == 0 or step == steps - 1):
            log(
                {
                    "stage": "clip",
                    "step": step + 1,
                    "of": steps,
                    "loss": float(loss.detach()),
                    "s": time.time() - t0,
                }
            )
    return model.eval(), tokenizer


def save_clip(model, folder: Path, manifest: dict) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder
