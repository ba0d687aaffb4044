"""One explicit training loop: concepts -> LyCORIS checkpoints at the configured epochs.

As in the paper (App. D.2): UNet and text-encoder adapters trained at the same lr, AdamW (weight decay 0.1,
betas 0.9/0.99), constant lr after a linear warm-up, gradient clipping at 1, caption dropout 0.05, repeats
that balance concepts, one model learning every concept of the sweep. The VAE never runs in the loop:
latents are cached once per image (content-addressed) and shared by every configuration and seed. With
``train.train_text_encoder=false`` only the UNet is adapted and the text embeddings are computed once.

Preemption: after every checkpoint the optimiser, scheduler, random-number states and log go to a training
state file beside the run (``train_state.safetensors``, keyed by the train stage's key); a rerun continues from the
last checkpoint and ends with the same bits as an uninterrupted run.

``adapter=external`` trains nothing: the "training" of such a cell checks that the given adapter loads
and changes the model, and copies it in as the cell's single checkpoint.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import adapters
from .data import ConceptFolder
from .devices import autocast, grad_scaler, resolve_amp, resolve_device, speed_up_unet
from .image_policy import IMAGE_POLICY, to_rgb
from .state_io import StateFileError, load_state, save_state
from .store import atomic_write_text, atomic_write_with, content_key, file_sha256

log = logging.getLogger("lycobench")
LOG_COLUMNS = ["step", "epoch", "loss", "lr", "seconds", "steps_per_s", "cpu_seconds"]


class TrainingDiverged(RuntimeError):
    cause = "nan"


@dataclass
class Sample:
    latent: torch.Tensor
    input_ids: torch.Tensor
    concept: str
    cond: torch.Tensor | None = None  # cached text embedding (frozen text encoder only)


def repeats_for(concept: ConceptFolder, exposures_per_epoch: int) -> int:
    """Per-concept repeats so every concept is seen about ``exposures_per_epoch`` times per epoch."""
    return max(1, round(exposures_per_epoch / concept.n_images))


def load_image_tensor(path: Path, resolution: int) -> torch.Tensor:
    """The image policy of image_policy.to_rgb, centre-cropped square, resized, in [-1, 1]."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im = to_rgb(im)
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@torch.no_grad()
def cached_latents(
    vae, images: list[Path], resolution: int, model_key: str, cache_dir: Path, progress=None
) -> list[torch.Tensor]:
    """VAE latents (distribution mean x scaling factor), computed once per (VAE, image, resolution, policy)."""
    from safetensors.torch import load_file, save_file

    out = []
    for i, path in enumerate(images):
        if progress is not None:
            progress(i, len(images))
        key = content_key(
            {"vae": model_key, "image": file_sha256(path), "resolution": resolution, "policy": IMAGE_POLICY}
        )
        f = Path(cache_dir) / "latents" / f"{key}.safetensors"
        if f.is_file():
            out.append(load_file(str(f))["latent"])
            continue
        pixels = load_image_tensor(path, resolution)[None].to(vae.device, vae.dtype)
        latent = vae.encode(pixels).latent_dist.mean[0] * vae.config.scaling_factor
        if not torch.isfinite(latent).all():
            raise TrainingDiverged(
                f"{path}: the VAE gives non-finite latents for this image; remove or replace it"
            )
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


@torch.no_grad()
def embed(text_encoder, ids: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Frozen text-encoder outputs (last hidden state), computed once for the whole run."""
    dev = text_encoder.device
    return torch.cat([text_encoder(ids[i : i + batch].to(dev))[0] for i in range(0, len(ids), batch)])


def constant_with_warmup(warmup: int):
    return lambda step: min(1.0, (step + 1) / max(1, warmup))


def diffusion_loss(
    unet, latents, cond, alphas_cumprod, prediction: str, n_timesteps: int, gen
) -> torch.Tensor:
    """Noise-prediction MSE at uniformly drawn timesteps (epsilon or v target, as the scheduler says)."""
    # drawn on the CPU generator whatever the device: the same noise stream on every device
    noise = torch.randn(latents.shape, generator=gen).to(latents.device)
    t = torch.randint(0, n_timesteps, (len(latents),), generator=gen).to(latents.device)
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * latents
    pred = unet(noisy, t, encoder_hidden_states=cond).sample
    return torch.nn.functional.mse_loss(pred.float(), target.float())


def checkpoint_epochs(tcfg: DictConfig) -> list[int]:
    epochs = int(tcfg.epochs)
    ckpt = sorted({int(e) for e in tcfg.checkpoint_epochs})
    bad = [e for e in ckpt if not 1 <= e <= epochs]
    if bad or not ckpt:
        raise ValueError(
            f"train.checkpoint_epochs={list(tcfg.checkpoint_epochs)}: every entry must lie in 1..train.epochs={epochs} "
            "and there must be at least one (conf/train/)"
        )
    return ckpt


def build_samples(
    pipe, concepts: list[ConceptFolder], tcfg, resolution: int, model_key: str, cache_dir: Path, progress=None
) -> list[Sample]:
    """Every (latent, caption) pair, repeated per concept; embeddings too when the text encoder is frozen."""
    per_concept_items = [[item for leaf in c.leaves for item in leaf.items] for c in concepts]
    images = [it.image for items in per_concept_items for it in items]
    all_latents = cached_latents(pipe.vae, images, resolution, model_key, cache_dir, progress)
    samples, start = [], 0
    for c, items in zip(concepts, per_concept_items):
        latents, start = all_latents[start : start + len(items)], start + len(items)
        ids = tokenize(pipe.tokenizer, [it.caption for it in items])
        conds = None if tcfg.train_text_encoder else embed(pipe.text_encoder, ids)
        per_concept = [
            Sample(lat, ids[i], c.name, None if conds is None else conds[i]) for i, lat in enumerate(latents)
        ]
        samples += per_concept * repeats_for(c, int(tcfg.exposures_per_epoch))
    return samples


def effective_lr(cfg: DictConfig) -> float:
    """The configuration's lr (the paper's level, what the analysis reads) times ``train.lr_scale`` (a recipe
    with far fewer steps than the paper's scales every lr alike, keeping their ratios) times the algorithm's
    own ``adapter.lr_scale`` (default 1; conf/adapter/full.yaml says why native fine-tuning has one)."""
    return (
        float(cfg.adapter.lr)
        * float(cfg.train.get("lr_scale", 1.0))
        * float(cfg.adapter.get("lr_scale", 1.0))
    )


def read_state(path: Path | None, key: str) -> dict | None:
    """The training state saved at the last checkpoint of an interrupted run with this train ``key``, or
    None (absent, not a state file, written for other settings, or its checkpoints are gone: the file is
    removed and the run starts over). The file is never unpickled (:mod:`lycobench.state_io`)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        state = load_state(path)
    except StateFileError as e:
        log.warning("%s: training starts over", e)
        state = None
    saved = state.get("saved") if state else None
    if (
        not state
        or state.get("key") != key
        or not isinstance(saved, dict)
        or not all(Path(p).is_file() for p in saved.values())
    ):
        Path(path).unlink(missing_ok=True)
        return None
    return state


def _save_state(path: Path, key: str, **state) -> None:
    save_state(path, {"key": key, **state})


def train(
    cfg: DictConfig,
    concepts: list[ConceptFolder],
    checkpoint_path,
    log_path: Path,
    cache_dir: Path,
    model_key: str,
    progress=None,
    state_path: Path | None = None,
    state_key: str = "",
) -> dict[int, Path]:
    """Train the cell's adapter and save a checkpoint at each configured epoch; returns {step: path}.

    With ``state_path``, the training state is saved there at every checkpoint, and a state left there by
    an interrupted run with the same ``state_key`` is resumed (see :func:`read_state`).

    On the CPU, float reductions split over threads round differently, so the loop (and the latents and
    embeddings it caches) runs with ``train.cpu_threads`` torch threads whatever the launcher gave the
    process: a sequential and a parallel sweep train the same bits."""
    if cfg.adapter.algo == "external":
        from .external_adapter import adopt_external

        step, epoch, path = adopt_external(cfg, checkpoint_path, cache_dir)
        _write_log(log_path, [(step, epoch, None, None, None, None, None)])
        return {step: path}
    previous = torch.get_num_threads()
    torch.set_num_threads(int(cfg.train.get("cpu_threads", 1)))
    try:
        return _train(
            cfg, concepts, checkpoint_path, log_path, cache_dir, model_key, progress, state_path, state_key
        )
    finally:
        torch.set_num_threads(previous)


def _train(cfg, concepts, checkpoint_path, log_path, cache_dir, model_key, progress, state_path, state_key):
    from .models import load_pipeline

    tcfg = cfg.train
    seed = int(cfg.seed)
    ckpt_epochs = checkpoint_epochs(tcfg)
    device = resolve_device(tcfg.get("device"), "train.device")
    amp = resolve_amp(tcfg.get("mixed_precision"), device)
    pipe = load_pipeline(cfg.model, cache_dir, device=device, dtype="float32")  # float32 master weights
    speed_up_unet(pipe.unet, device, compile_unet=bool(tcfg.get("compile", False)))
    resolution = int(cfg.model.resolution)
    unet, text_encoder = pipe.unet, pipe.text_encoder
    for m in (unet, text_encoder, pipe.vae):
        m.requires_grad_(False)
        m.eval()

    train_te = bool(tcfg.train_text_encoder)
    samples = build_samples(pipe, concepts, tcfg, resolution, model_key, cache_dir, progress)
    empty_ids = tokenize(pipe.tokenizer, [""])
    empty_cond = None if train_te else embed(text_encoder, empty_ids)[0]

    adapter_cfg, target_cfg = OmegaConf.to_container(cfg.adapter), OmegaConf.to_container(cfg.target)
    adapter = adapters.attach(pipe, adapter_cfg, target_cfg, train_te, seed)
    for net in adapter.networks.values():  # LyCORIS builds its modules on the CPU
        net.to(device)
    adapter.set_bypass(bool(tcfg.get("bypass_forward", False)))
    adapter.train(True)
    params = adapter.parameters()
    opt = torch.optim.AdamW(
        params, lr=effective_lr(cfg), weight_decay=float(tcfg.weight_decay), betas=tuple(tcfg.betas)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, constant_with_warmup(int(tcfg.warmup_steps)))
    scaler = grad_scaler(amp)
    noise_sched = pipe.scheduler
    loss_args = (
        noise_sched.alphas_cumprod.to(device),
        noise_sched.config.prediction_type,
        noise_sched.config.num_train_timesteps,
    )

    gen = torch.Generator().manual_seed(seed)
    random.seed(seed)  # DyLoRA draws its rank with Python's random
    bs = int(tcfg.batch_size)
    steps_per_epoch = math.ceil(len(samples) / bs)
    total_steps = steps_per_epoch * int(tcfg.epochs)
    meta_train = OmegaConf.to_container(tcfg)
    log_rows, saved, step, first_epoch = [], {}, 0, 1
    state = read_state(state_path, state_key)
    if state is not None:  # resume after the last checkpoint of an interrupted run
        last = state["saved"][max(state["saved"])]
        adapters.load_weights(adapter, last)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        random.setstate(state["python_random"])
        torch.set_rng_state(state["torch_random"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        log_rows, saved, step = (
            state["log"],
            {int(k): Path(v) for k, v in state["saved"].items()},
            state["step"],
        )
        first_epoch = state["epoch"] + 1
        log.info("resuming training after epoch %d from %s", state["epoch"], last)
    # CPU time is comparable on a shared machine; both clocks continue where a resumed run stopped
    t0 = time.perf_counter() - (log_rows[-1][4] if log_rows else 0.0)
    cpu0 = time.process_time() - (log_rows[-1][6] if log_rows else 0.0)

    def diverged(what: str, epoch: int) -> TrainingDiverged:
        _write_log(log_path, log_rows)
        kept = (
            f"the last good checkpoint is {saved[max(saved)]}"
            if saved
            else "no checkpoint was saved before it"
        )
        return TrainingDiverged(
            f"{what} at step {step + 1} (epoch {epoch}): training stopped; {kept}. "
            "Lower adapter.lr, or check the inputs with `python -m lycobench validate`"
        )

    for epoch in range(first_epoch, int(tcfg.epochs) + 1):
        order = torch.randperm(len(samples), generator=gen).tolist()
        for b in range(steps_per_epoch):
            batch = [samples[i] for i in order[b * bs : (b + 1) * bs]]
            latents = torch.stack([s.latent for s in batch]).to(device)
            drop = (torch.rand(len(batch), generator=gen) < float(tcfg.caption_dropout)).tolist()
            with autocast(amp, device):
                if train_te:
                    ids = torch.cat([empty_ids if d else s.input_ids[None] for s, d in zip(batch, drop)])
                    cond = text_encoder(ids.to(device))[0]
                else:
                    cond = torch.stack([empty_cond if d else s.cond for s, d in zip(batch, drop)]).to(device)
                loss = diffusion_loss(unet, latents, cond, *loss_args, gen)
            if not torch.isfinite(loss):
                raise diverged(f"loss is {loss.item()}", epoch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, float(tcfg.max_grad_norm))
            if not torch.isfinite(grad_norm) and not scaler.is_enabled():
                raise diverged(f"gradient norm is {grad_norm.item()}", epoch)
            lr = opt.param_groups[0]["lr"]  # the lr this step uses (the scheduler moves it on below)
            scaler.step(opt)  # with fp16 loss scaling, an overflowing step is skipped and the scale lowered
            scaler.update()
            sched.step()
            step += 1
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            log_rows.append((step, epoch, loss.item(), lr, seconds, step / seconds, cpu))
            if progress is not None:
                progress(step, total_steps)
        if epoch in ckpt_epochs:
            meta = adapters.checkpoint_metadata(adapter_cfg, target_cfg, meta_train, step, epoch)
            meta["lycobench.image_policy"] = IMAGE_POLICY
            path = checkpoint_path(step)
            adapters.save(adapter, path, meta)
            saved[step] = path
            if state_path is not None and epoch < int(tcfg.epochs):
                _save_state(
                    state_path, state_key, epoch=epoch, step=step, saved=saved, log=log_rows,
                    optimizer=opt.state_dict(), scheduler=sched.state_dict(), generator=gen.get_state(),
                    python_random=random.getstate(), torch_random=torch.get_rng_state(),
                    scaler=scaler.state_dict(),
                )  # fmt: skip
    _write_log(log_path, log_rows)
    return saved


def _write_log(path: Path, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(LOG_COLUMNS)
    for step, epoch, loss, lr, sec, rate, cpu in rows:
        w.writerow([step, epoch, _num(loss), _num(lr), _num(sec, ".3f"), _num(rate, ".4g"), _num(cpu, ".3f")])
    atomic_write_text(path, buf.getvalue())


def _num(x, fmt: str = ".6g") -> str:
    return "" if x is None else format(x, fmt)
