"""One explicit training loop: concepts -> LyCORIS checkpoints at the configured epochs.

As in the paper: UNet and text encoder adapters trained at the same lr, AdamW (weight decay 0.1,
betas 0.9/0.99), constant lr after a linear warm-up, gradient clipping at 1, caption dropout, repeats that
balance concepts, one model learning every concept of the sweep. The VAE never runs in the loop: latents
are cached once per image (content-addressed) and shared by every configuration and seed.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import adapters
from .data import Concept
from .store import atomic_write_text, content_key, file_sha256


class TrainingDiverged(RuntimeError):
    cause = "nan"


@dataclass
class Sample:
    latent: torch.Tensor
    input_ids: torch.Tensor
    concept: str


def repeats_for(concept: Concept, exposures_per_epoch: int) -> int:
    """Per-concept repeats so every concept is seen about ``exposures_per_epoch`` times per epoch."""
    return max(1, round(exposures_per_epoch / concept.n_images))


def load_image_tensor(path: Path, resolution: int) -> torch.Tensor:
    """RGB (EXIF-rotated, alpha on white), centre-cropped square, resized, in [-1, 1]."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        im = im.convert("RGB")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@torch.no_grad()
def cached_latents(
    vae, images: list[Path], resolution: int, model_key: str, cache_dir: Path
) -> list[torch.Tensor]:
    """VAE latents (distribution mean x scaling factor), computed once per (VAE, image, resolution)."""
    from safetensors.torch import load_file, save_file

    from .store import atomic_write_with

    out = []
    for path in images:
        key = content_key({"vae": model_key, "image": file_sha256(path), "resolution": resolution})
        f = Path(cache_dir) / "latents" / f"{key}.safetensors"
        if f.is_file():
            out.append(load_file(str(f))["latent"])
            continue
        pixels = load_image_tensor(path, resolution)[None].to(vae.device, vae.dtype)
        latent = vae.encode(pixels).latent_dist.mean[0] * vae.config.scaling_factor
        if not torch.isfinite(latent).all():
            raise TrainingDiverged(f"{path}: the VAE gives non-finite latents for this image")
        latent = latent.float().cpu().contiguous()
        atomic_write_with(f, lambda tmp, t=latent: save_file({"latent": t}, str(tmp)))
        out.append(latent)
    return out


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    return tokenizer(
        texts,
        padding="max_length",
        truncation=True,
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids


def constant_with_warmup(warmup: int):
    return lambda step: min(1.0, (step + 1) / max(1, warmup))


def train(
    cfg: DictConfig,
    concepts: list[Concept],
    checkpoint_path,
    log_path: Path,
    cache_dir: Path,
    model_key: str,
    progress=None,
) -> dict[int, Path]:
    """Train the cell's adapter and save a checkpoint at each configured epoch; returns {step: path}."""
    from .models import load_pipeline

    tcfg = cfg.train
    seed = int(cfg.seed)
    pipe = load_pipeline(cfg.model, cache_dir)
    resolution = int(cfg.model.resolution)
    unet, text_encoder, vae = pipe.unet, pipe.text_encoder, pipe.vae
    for m in (unet, text_encoder, vae):
        m.requires_grad_(False)
        m.eval()

    samples = []
    for c in concepts:
        items = [item for leaf in c.leaves for item in leaf.items]
        latents = cached_latents(vae, [it.image for it in items], resolution, model_key, cache_dir)
        ids = tokenize(pipe.tokenizer, [it.caption for it in items])
        for _ in range(repeats_for(c, int(tcfg.exposures_per_epoch))):
            samples += [Sample(lat, ids[i], c.name) for i, lat in enumerate(latents)]
    empty_ids = tokenize(pipe.tokenizer, [""])[0]

    train_te = bool(tcfg.train_text_encoder)
    adapter = adapters.attach(
        pipe, OmegaConf.to_container(cfg.adapter), OmegaConf.to_container(cfg.target), train_te, seed
    )
    adapter.train(True)
    params = adapter.parameters()
    lr = float(cfg.adapter.lr)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=float(tcfg.weight_decay), betas=tuple(tcfg.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, constant_with_warmup(int(tcfg.warmup_steps)))
    noise_sched = pipe.scheduler
    n_train_t = noise_sched.config.num_train_timesteps
    alphas = noise_sched.alphas_cumprod
    prediction = noise_sched.config.prediction_type

    gen = torch.Generator().manual_seed(seed)
    bs = int(tcfg.batch_size)
    steps_per_epoch = math.ceil(len(samples) / bs)
    ckpt_epochs = sorted(int(e) for e in tcfg.checkpoint_epochs)
    total_steps = steps_per_epoch * int(tcfg.epochs)
    log_rows, saved, step, t0 = [], {}, 0, time.perf_counter()

    for epoch in range(1, int(tcfg.epochs) + 1):
        order = torch.randperm(len(samples), generator=gen).tolist()
        for b in range(steps_per_epoch):
            batch = [samples[i] for i in order[b * bs : (b + 1) * bs]]
            latents = torch.stack([s.latent for s in batch])
            drop = torch.rand(len(batch), generator=gen) < float(tcfg.caption_dropout)
            ids = torch.stack([empty_ids if d else s.input_ids for s, d in zip(batch, drop.tolist())])
            noise = torch.randn(latents.shape, generator=gen)
            t = torch.randint(0, n_train_t, (len(batch),), generator=gen)
            a = alphas[t].view(-1, 1, 1, 1)
            noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
            target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * latents
            with torch.set_grad_enabled(train_te):
                cond = text_encoder(ids)[0]
            pred = unet(noisy, t, encoder_hidden_states=cond).sample
            loss = torch.nn.functional.mse_loss(pred.float(), target.float())
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {loss.item()} at step {step + 1}; the last good checkpoint is kept"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, float(tcfg.max_grad_norm))
            opt.step()
            sched.step()
            step += 1
            log_rows.append((step, epoch, float(loss), opt.param_groups[0]["lr"], time.perf_counter() - t0))
            if progress is not None:
                progress(step, total_steps)
        if epoch in ckpt_epochs:
            meta = {
                "lycobench.step": step,
                "lycobench.epoch": epoch,
                "lycobench.algo": cfg.adapter.algo,
                "lycobench.target": cfg.target.name,
                "lycobench.adapter": OmegaConf.to_yaml(cfg.adapter),
                "ss_network_module": "lycoris.kohya",
                "ss_network_dim": cfg.adapter.get("dim"),
                "ss_network_alpha": cfg.adapter.get("alpha"),
            }
            path = checkpoint_path(step)
            adapters.save(adapter, path, meta)
            saved[step] = path
    _write_log(log_path, log_rows)
    return saved


def _write_log(path: Path, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "epoch", "loss", "lr", "seconds"])
    for step, epoch, loss, lr, sec in rows:
        w.writerow([step, epoch, f"{loss:.6g}", f"{lr:.6g}", f"{sec:.3f}"])
    atomic_write_text(path, buf.getvalue())
