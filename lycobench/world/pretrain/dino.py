"""The world's DINO-style image encoder: a small transformers ``Dinov2Model`` trained self-supervised.

No labels: two random views of each render (crop, flip, blur, resampling, colour shift, noise) are pulled
together and pushed away from the other images of the batch (SimCLR's NT-Xent on a projection head; the
head is dropped after training). The feature is ``pooler_output`` (the final-norm CLS token), as for DINOv2.
Saved with ``save_pretrained`` in fp16 safetensors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .views import encoder_data, random_view

DINO_CONFIG = dict(
    hidden_size=96,
    num_hidden_layers=4,
    num_attention_heads=3,
    mlp_ratio=2,
    image_size=32,
    patch_size=4,
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TEMPERATURE = 0.2


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[N,3,32,32] in [0,1] -> ImageNet-normalised, as lycobench.metric_encoders feeds DINOv2 models."""
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def build(seed: int):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    return Dinov2Model(Dinov2Config(**DINO_CONFIG))


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the 2N-1 other views."""
    z = F.normalize(torch.cat([a, b]), dim=-1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train_dino(
    n_images: int, steps: int, seed: int, batch: int = 128, lr: float = 1e-3,
    log: Callable[[dict], None] | None = None, colour: bool = False, p_concept: float = 0.4,
):  # fmt: skip
    from .views import to_float

    model = build(seed)
    hidden = DINO_CONFIG["hidden_size"]
    head = nn.Sequential(nn.Linear(hidden, 256), nn.GELU(), nn.Linear(256, 64))
    _, images = encoder_data(n_images, seed, p_concept=p_concept)
    g = torch.Generator().manual_seed(seed + 3)
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
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
        x = to_float(images[idx])
        va, vb = (normalise(random_view(x, g, colour=colour)) for _ in range(2))
        feats = model(pixel_values=torch.cat([va, vb])).pooler_output
        pa, pb = head(feats).chunk(2)
        loss = nt_xent(pa, pb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if log is not None and (step % 25 == 0 or step == steps - 1):
            log(
                {
                    "stage": "dino",
                    "step": step + 1,
                    "of": steps,
                    "loss": float(loss.detach()),
                    "s": time.time() - t0,
                }
            )
    return model.eval()
