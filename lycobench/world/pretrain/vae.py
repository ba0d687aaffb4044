"""The world's autoencoder: an ``AutoencoderKL`` from scratch, 32x32x3 images <-> 8x8x8 latents.

Recipe B of the notes found the 4x8x8 VAE to be the quality ceiling (the oracle read 0.84 of shapes on its
reconstructions). This one keeps the 8x8 grid (UNet steps stay cheap) but doubles the latent channels and
adds an edge term to the loss (L1 on image gradients), which keeps outlines and corners crisp.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import to_unit

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    latent_channels=8,
    norm_num_groups=16,
    sample_size=32,
)
KL_WEIGHT = 1e-6
EDGE_WEIGHT = 1.0


def build_vae(seed: int, latent_channels: int = VAE_CONFIG["latent_channels"]):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**{**VAE_CONFIG, "latent_channels": latent_channels})


def _grad_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences: penalises blurred edges."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean()


def vae_loss(vae, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    post = vae.encode(x).latent_dist
    z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
    rec = vae.decode(z).sample
    kl = post.kl().mean() / x[0].numel()
    return F.mse_loss(rec, x) + 0.5 * (rec - x).abs().mean() + EDGE_WEIGHT * _grad_l1(rec, x) + KL_WEIGHT * kl


def train_vae(
    images: np.ndarray,
    steps: int,
    seed: int,
    batch: int = 32,
    lr: float = 1e-3,
    log: Callable[[dict], None] | None = None,
    latent_channels: int = VAE_CONFIG["latent_channels"],
):
    """Train from scratch on uint8 images [N,32,32,3]; AdamW, warm-up then cosine decay to 10%."""
    vae = build_vae(seed, latent_channels).train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    warm = min(100, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm
            if s < warm
            else 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
        ),
    )
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen).numpy()
        loss = vae_loss(vae, to_unit(images[idx]), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log(
                {
                    "stage": "vae",
                    "step": step + 1,
                    "of": steps,
                    "loss": float(loss.detach()),
                    "s": time.time() - t0,
                }
            )
    return vae.eval()


@torch.no_grad()
def encode(vae, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Latent means (unscaled) [N,C,8,8]: deterministic, as lycobench.train caches them."""
    return torch.cat(
        [vae.encode(to_unit(images[i : i + batch])).latent_dist.mean for i in range(0, len(images), batch)]
    )


@torch.no_grad()
def reconstruct(vae, images: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        rec = vae.decode(vae.encode(to_unit(images[i : i + batch])).latent_dist.mean).sample
        out.append(((rec.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


BORDER_SEED = 7_100_003  # the decoder's bordered copies: their own seed stream


def with_borders(images: np.ndarray, share: float, seed: int) -> np.ndarray:
    """``images`` plus bordered copies of some of them, so that the copies are ``share`` of the result: each
    copy framed by a 2-5 px border (at 32 px) in a random world colour. A generic picture treatment, like
    the framed, matted and letterboxed pictures a real autoencoder's data holds: the decoder learns to draw
    a picture's edge in any colour, not one concept's frame."""
    from ..vocab import COLOURS

    if share <= 0:
        return images
    rng = np.random.default_rng(seed + BORDER_SEED)
    n = round(len(images) * share / (1 - share))
    copies = images[rng.integers(0, len(images), n)].copy()
    palette = np.asarray(list(COLOURS.values()), np.uint8)
    side = images.shape[1] // 32 or 1
    for img, k, c in zip(copies, rng.integers(2, 6, n) * side, rng.integers(0, len(palette), n)):
        img[:k], img[-k:], img[:, :k], img[:, -k:] = (palette[c],) * 4
    return np.concatenate([images, copies])


def finetune_decoder(
    vae,
    images: np.ndarray,
    steps: int,
    seed: int,
    batch: int = 32,
    lr: float = 5e-4,
    log: Callable[[dict], None] | None = None,
):
    """Train only the decoder on latent means, with the encoder frozen: reconstructions get sharper while the
    latent space (what the UNet learned) stays exactly the same, so this can run after or beside the UNet."""
    vae.requires_grad_(False)
    params = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    vae.train()
    gen = torch.Generator().manual_seed(seed + 17)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.45 * (1 + math.cos(math.pi * s / max(1, steps)))
    )
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen).numpy()
        x = to_unit(images[idx])
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + 0.5 * (rec - x).abs().mean() + EDGE_WEIGHT * _grad_l1(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log(
                {
                    "stage": "decoder",
                    "step": step + 1,
                    "of": steps,
                    "loss": float(loss.detach()),
                    "s": time.time() - t0,
                }
            )
    vae.requires_grad_(False)
    return vae.eval()
