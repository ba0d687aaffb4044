"""Checkpoints x prompt plan -> images, and base-model images through the content-addressed cache.

Each image has its own CPU generator seeded from (prompt file, image index), so an image does not depend
on the batch it was drawn in, on the model, or on the training seed. Base-model images (no adapter) are
made once per (model, prompt, seed, sampler settings) and shared by every configuration and sweep.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .prompts import PromptImage
from .store import atomic_write_bytes, content_key


def sampler_settings(gcfg: DictConfig, resolution: int) -> dict:
    return {
        "sampler": gcfg.sampler,
        "steps": int(gcfg.steps),
        "guidance_scale": float(gcfg.guidance_scale),
        "negative_prompt": gcfg.negative_prompt,
        "resolution": resolution,
    }


def base_image_key(model_key: str, settings: dict, item: PromptImage) -> str:
    return content_key(
        {"model": model_key, "sampler": settings, "prompt": item.prompt, "seed": item.seed}, 24
    )


def png_bytes(array, text: dict[str, str]) -> bytes:
    """PNG with provenance in text chunks; no timestamps, so equal pixels give equal bytes."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, str(v))
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def configure_sampler(pipe, sampler: str) -> None:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    classes = {
        "ddim": DDIMScheduler,
        "dpmpp": DPMSolverMultistepScheduler,
        "euler_a": EulerAncestralDiscreteScheduler,
    }
    if sampler not in classes:
        raise ValueError(f"generate.sampler={sampler!r}: choose one of {', '.join(classes)}")
    pipe.scheduler = classes[sampler].from_config(pipe.scheduler.config)


@torch.no_grad()
def render(
    pipe,
    items: list[PromptImage],
    settings: dict,
    batch_size: int,
    write: Callable[[PromptImage, object], None],
    progress=None,
):
    """Generate ``items`` in batches; ``write(item, uint8 HxWx3 array)`` stores each image."""
    import numpy as np

    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        out = pipe(
            prompt=[it.prompt for it in batch],
            negative_prompt=[settings["negative_prompt"]] * len(batch),
            generator=[torch.Generator("cpu").manual_seed(it.seed) for it in batch],
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            height=settings["resolution"],
            width=settings["resolution"],
            output_type="np",
        ).images
        for it, img in zip(batch, out):
            write(it, (np.clip(img, 0, 1) * 255).round().astype(np.uint8))
        if progress is not None:
            progress(min(start + batch_size, len(items)), len(items))


def generate(
    cfg: DictConfig,
    plan: list[PromptImage],
    checkpoints: dict[int, Path],
    run_root: Path,
    sweep_dir: Path,
    model_key: str,
    progress=None,
) -> list[dict]:
    """Base images (cached) and one image set per checkpoint; returns the rows of images.parquet."""
    from . import adapters
    from .models import load_pipeline

    gcfg = cfg.generate
    settings = sampler_settings(gcfg, int(cfg.model.resolution))
    cache = sweep_dir / "cache" / "base-images"
    pipe = load_pipeline(cfg.model, sweep_dir / "cache")
    configure_sampler(pipe, settings["sampler"])
    rows = []

    def row(step, it, path):
        return {
            "step": step,
            "leaf": it.leaf,
            "prompt_type": it.prompt_type,
            "prompt_id": it.prompt_id,
            "index": it.index,
            "prompt": it.prompt,
            "seed": it.seed,
            "path": str(path.relative_to(sweep_dir)),
        }

    base_paths = {it: cache / f"{base_image_key(model_key, settings, it)}.png" for it in plan}
    missing = [it for it in plan if not base_paths[it].is_file()]

    def write_base(it, arr):
        text = {"prompt": it.prompt, "seed": it.seed, "model": cfg.model.name, "adapter": "none", "step": 0}
        atomic_write_bytes(base_paths[it], png_bytes(arr, text))

    render(pipe, missing, settings, int(gcfg.batch_size), write_base, progress)
    rows += [row(0, it, base_paths[it]) for it in plan]

    adapter = None
    for step, ckpt in sorted(checkpoints.items()):
        if adapter is None:
            adapter = adapters.load(
                pipe,
                ckpt,
                OmegaConf.to_container(cfg.adapter),
                OmegaConf.to_container(cfg.target),
                float(gcfg.multiplier),
            )
        else:
            adapters.load_weights(adapter, ckpt)
        adapter.train(False)
        folder = run_root / "images" / f"step-{step}"

        def image_path(it, folder=folder):
            return folder / it.leaf / it.prompt_type / f"{it.prompt_id}-{it.index}.png"

        def write(it, arr, step=step, image_path=image_path):
            text = {
                "prompt": it.prompt,
                "seed": it.seed,
                "model": cfg.model.name,
                "adapter": cfg.cell,
                "step": step,
            }
            atomic_write_bytes(image_path(it), png_bytes(arr, text))

        render(pipe, plan, settings, int(gcfg.batch_size), write, progress)
        rows += [row(step, it, image_path(it)) for it in plan]
    return rows
