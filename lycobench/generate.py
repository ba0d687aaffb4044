"""Checkpoints x prompt plan -> images, and base-model images through the content-addressed cache.

Each image has its own CPU generator seeded from (prompt file, image index), so an image does not depend
on the batch it was drawn in, on the model, or on the training seed. On the CPU the sampling is also bit
for bit independent of the batch size (``lycobench.batch_invariance``). Base-model images (no adapter) are made
once per (model, prompt, seed, sampler settings, numerics) into ``<cache_dir>/base-images`` and shared by
every configuration and every sweep that points at the same cache. Identical (prompt, seed) pairs in a
plan are drawn once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .batch_invariance import sampling
from .devices import resolve_device, speed_up_unet
from .prompts import PromptImage, parse_expect
from .store import atomic_write_bytes, content_key

# batch size on the CPU when generate.batch_size=auto: at 32 px the per-operation overhead dominates, so a
# batch of 64 draws ~12% more images per second than one of 16 (same images: the CPU batch-invariance shim)
CPU_BATCH = 64
MAX_BATCH = 64  # upper bound of the batch size chosen from free GPU memory
MEMORY_HEADROOM = 0.8  # fraction of free GPU memory the chosen batch may use


def sampler_settings(gcfg: DictConfig, resolution: int) -> dict:
    return {
        "sampler": gcfg.sampler,
        "steps": int(gcfg.steps),
        "guidance_scale": float(gcfg.guidance_scale),
        "negative_prompt": gcfg.negative_prompt,
        "resolution": resolution,
    }


def numerics(pipe, device: str, dtype: str, invariant: bool) -> dict:
    """Everything besides model, prompt, seed and sampler settings that changes an image's bits."""
    out = {
        "device": "cuda" if device.startswith("cuda") else device,
        "dtype": dtype,
        "torch": torch.__version__,
        "diffusers": metadata.version("diffusers"),
        "scheduler": {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")},
        "scheduler_class": type(pipe.scheduler).__name__,
        "cpu_batch_invariant": invariant,
    }
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def base_image_key(model_key: str, settings: dict, item: PromptImage, numeric: dict | None = None) -> str:
    """The cache key of a base-model image. The prompt text, not the template file, is what the image
    depends on, so editing an unrelated template line keeps every other base image."""
    return content_key(
        {
            "model": model_key,
            "sampler": settings,
            "prompt": item.prompt,
            "seed": item.seed,
            "numerics": numeric or {},
        },
        24,
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


# --- batches ---------------------------------------------------------------------------------------------


def batch_from_memory(free: int, peak_one: int, peak_two: int, cap: int = MAX_BATCH) -> int:
    """The largest batch whose measured footprint fits in ``MEMORY_HEADROOM`` of the free memory.

    ``peak_one``/``peak_two``: peak bytes above the resident weights for a batch of 1 and of 2 images;
    their difference is the cost of one more image, the rest is fixed.
    """
    per_image = max(peak_two - peak_one, 1)
    fixed = max(peak_one - per_image, 0)
    return int(max(1, min(cap, (free * MEMORY_HEADROOM - fixed) // per_image)))


def cuda_batch_size(pipe, settings: dict) -> int:
    """Measure one sampling step at batch 1 and 2 on the GPU and size the batch from free memory."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    peaks = []
    for n in (1, 2):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        draw(pipe, ["a photo"] * n, list(range(n)), {**settings, "steps": 1})
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - before)
    return batch_from_memory(free, peaks[0], peaks[1])


def batch_size_for(gcfg: DictConfig, pipe, settings: dict, device: str) -> int:
    """``generate.batch_size``: a number, or ``auto`` (CPU: a fixed CPU_BATCH; CUDA: from free memory)."""
    bs = gcfg.get("batch_size", "auto")
    if str(bs) != "auto":
        if int(bs) < 1:
            raise ValueError(f"generate.batch_size={bs}: use a positive number or auto")
        return int(bs)
    return cuda_batch_size(pipe, settings) if device.startswith("cuda") else CPU_BATCH


# --- drawing ---------------------------------------------------------------------------------------------


@torch.no_grad()
def draw(pipe, prompts: list[str], seeds: list[int], settings: dict) -> np.ndarray:
    """One pipeline call: uint8 images [N, H, W, 3], image j from its own CPU generator seeded seeds[j]."""
    out = pipe(
        prompt=list(prompts),
        negative_prompt=[settings["negative_prompt"]] * len(prompts),
        generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds],
        num_inference_steps=settings["steps"],
        guidance_scale=settings["guidance_scale"],
        height=settings["resolution"],
        width=settings["resolution"],
        output_type="np",
    ).images
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def render(
    pipe,
    items: list[PromptImage],
    settings: dict,
    batch_size: int,
    write: Callable[[PromptImage, np.ndarray], None],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Draw ``items`` in batches across prompts; each distinct (prompt, seed) is drawn once and written
    for every item that asks for it. ``progress(n)`` after each batch; returns the number drawn."""
    groups: dict[tuple[str, int], list[PromptImage]] = {}
    for it in items:
        groups.setdefault((it.prompt, it.seed), []).append(it)
    keys = list(groups)
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        images = draw(pipe, [p for p, _ in chunk], [s for _, s in chunk], settings)
        for key, image in zip(chunk, images):
            for it in groups[key]:
                write(it, image)
        if progress is not None:
            progress(len(chunk))
    return len(keys)


class Progress:
    """Feeds ``callback(done, total)`` (cell.py's bar, which shows the rate and the time left)."""

    def __init__(self, callback: Callable[[int, int], None] | None):
        self.callback, self.done, self.total = callback, 0, 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (flock): workers sharing a cache take turns, so no base image is made
    twice; a dead worker's lock is released by the OS. Writes are atomic in any case."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): atomic writes still keep the cache whole
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def base_cache_dir(cfg: DictConfig, sweep_dir: Path) -> Path:
    """``cache_dir`` (default ``${results_dir}/cache``, shared by every sweep there) + ``base-images``."""
    root = cfg.get("cache_dir") or Path(sweep_dir) / "cache"
    return Path(str(root)).expanduser().resolve() / "base-images"


def attributes_json(it: PromptImage) -> str | None:
    """A template's expectations in the oracle's vocabulary (sets as sorted lists), or None."""
    if not it.expect:
        return None
    e = parse_expect(it.expect)
    return json.dumps({k: sorted(v) if isinstance(v, frozenset) else v for k, v in e.items()}, sort_keys=True)


def _row(step: int, it: PromptImage, path: Path, sweep_dir: Path) -> dict:
    return {
        "step": step,
        "leaf": it.leaf,
        "prompt_type": it.prompt_type,
        "prompt_id": it.prompt_id,
        "index": it.index,
        "prompt": it.prompt,
        "seed": it.seed,
        "variant": it.variant,
        # what the oracle should read, when the template says so (else evaluate parses the prompt)
        "attributes": attributes_json(it),
        "source": it.source,
        # relative to the sweep folder; base images in a shared cache start with ../
        "path": os.path.relpath(Path(path).resolve(), Path(sweep_dir).resolve()),
    }


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
    from .models import load_pipeline, resolve_dtype

    gcfg = cfg.generate
    settings = sampler_settings(gcfg, int(cfg.model.resolution))
    device = resolve_device(gcfg.get("device"))
    dtype = resolve_dtype(gcfg.get("dtype"), device)
    pipe = load_pipeline(cfg.model, Path(sweep_dir) / "cache", device=device, dtype=dtype)
    configure_sampler(pipe, settings["sampler"])
    speed_up_unet(pipe.unet, device, compile_unet=bool(gcfg.get("compile", False)))
    invariant = device == "cpu" and bool(gcfg.get("cpu_batch_invariant", True))
    numeric = numerics(pipe, device, dtype, invariant)
    sampler_text = json.dumps({**settings, "dtype": dtype}, sort_keys=True)
    cache = base_cache_dir(cfg, sweep_dir)
    base_paths = {it: cache / f"{base_image_key(model_key, settings, it, numeric)}.png" for it in plan}
    n_distinct = len({(it.prompt, it.seed) for it in plan})
    bar = Progress(progress)
    rows = []

    def write_base(it, arr):
        text = {
            "prompt": it.prompt,
            "seed": it.seed,
            "model": cfg.model.name,
            "adapter": "none",
            "step": 0,
            "sampler": sampler_text,
        }
        atomic_write_bytes(base_paths[it], png_bytes(arr, text))

    with sampling(pipe, invariant):
        batch_size = batch_size_for(gcfg, pipe, settings, device)
        with locked(cache / ".lock"):  # a worker that waited here finds the images made
            missing = [it for it in plan if not base_paths[it].is_file()]
            bar.total = len({base_paths[it] for it in missing}) + len(checkpoints) * n_distinct
            render(pipe, missing, settings, batch_size, write_base, bar.advance)
        rows += [_row(0, it, base_paths[it], sweep_dir) for it in plan]

        adapter = None
        multiplier = float(gcfg.multiplier)
        for step, ckpt in sorted(checkpoints.items()):
            if adapter is None:
                adapter = adapters.load(
                    pipe,
                    ckpt,
                    OmegaConf.to_container(cfg.adapter),
                    OmegaConf.to_container(cfg.target),
                    multiplier,
                )
                for net in adapter.networks.values():  # LyCORIS builds its modules in float32 on the CPU
                    net.to(device=pipe.unet.device, dtype=pipe.unet.dtype)
                adapter.set_bypass(bool(gcfg.get("bypass_forward", False)))
            else:
                adapters.load_weights(adapter, ckpt)
            adapter.train(False)
            folder = Path(run_root) / "images" / f"step-{step}"

            def image_path(it, folder=folder):
                return folder / it.leaf / it.prompt_type / f"{it.prompt_id}-{it.index}.png"

            def write(it, arr, step=step, image_path=image_path):
                text = {
                    "prompt": it.prompt,
                    "seed": it.seed,
                    "model": cfg.model.name,
                    "adapter": cfg.cell,
                    "step": step,
                    "multiplier": multiplier,
                    "sampler": sampler_text,
                }
                atomic_write_bytes(image_path(it), png_bytes(arr, text))

            render(pipe, plan, settings, batch_size, write, bar.advance)
            rows += [_row(step, it, image_path(it), sweep_dir) for it in plan]
    return rows
