"""Load a Stable Diffusion pipeline: the tiny seeded model, the embedded world, or a local SD folder.

Every model goes through ``StableDiffusionPipeline.from_pretrained`` on a diffusers folder, offline;
the tiny model is built once from its config, saved to the cache, and loaded the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .sd_pipeline import CLIP_TEXT_IDS, assemble_pipeline
from .store import content_key, weights_identity


class ModelNotFound(FileNotFoundError):
    pass


# model config keys that say how the model is used, not which weights it has (kept out of cache keys)
NOT_IDENTITY = ("templates", "twin_cells")  # settings of how the model is used, not of its weights


def model_identity(model_cfg: DictConfig) -> dict:
    """What identifies the model's weights in cache keys."""
    cfg = OmegaConf.to_container(model_cfg, resolve=True)
    for key in NOT_IDENTITY:
        cfg.pop(key, None)
    if cfg["kind"] in ("pretrained", "world"):
        folder = (
            resolve_pretrained(cfg["path"]) if cfg["kind"] == "pretrained" else world_folder(cfg.get("path"))
        )
        cfg["weights"] = weights_identity(folder)
    return cfg


def base_model_record(model_cfg: DictConfig) -> dict:
    """The base model as a sweep's manifest records it: name, kind, and the sha256 of the manifest.json
    its folder ships (the world's base model has one; None for a model without)."""
    from .store import file_sha256

    cfg = OmegaConf.to_container(model_cfg, resolve=True)
    record = {"name": cfg.get("name"), "kind": cfg.get("kind"), "manifest_sha256": None}
    try:
        folder = {
            "world": lambda: world_folder(cfg.get("path")),
            "pretrained": lambda: resolve_pretrained(cfg["path"]),
        }
        found = folder[cfg["kind"]]() if cfg.get("kind") in folder else None
    except (ModelNotFound, KeyError):
        found = None
    if found is not None and (Path(found) / "manifest.json").is_file():
        record["manifest_sha256"] = file_sha256(Path(found) / "manifest.json")
    return record


def build_tiny_pipeline(cfg: dict):
    """A random-init pipeline with SD 1.5's classes and the real CLIP tokenizer, seeded."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(cfg["init_seed"])
    v, u, t = cfg["vae"], cfg["unet"], cfg["text_encoder"]
    n = len(v["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(v["block_out_channels"]),
        latent_channels=v["latent_channels"],
        norm_num_groups=v["norm_num_groups"],
        sample_size=cfg["resolution"],
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_TEXT_IDS, **t))
    unet = UNet2DConditionModel(
        sample_size=cfg["resolution"] // 2 ** (n - 1),
        in_channels=v["latent_channels"],
        out_channels=v["latent_channels"],
        block_out_channels=tuple(u["block_out_channels"]),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=u["cross_attention_dim"],
        attention_head_dim=u["attention_head_dim"],
        norm_num_groups=u["norm_num_groups"],
    )
    return assemble_pipeline(vae, text_encoder, unet)


def resolve_pretrained(path_or_id: str) -> Path:
    """A local diffusers folder, or a hub id already in the local Hugging Face cache. Never downloads."""
    p = Path(path_or_id).expanduser()
    if (p / "model_index.json").is_file():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path_or_id, local_files_only=True))
    except Exception as e:
        raise ModelNotFound(
            f"model weights not found: {path_or_id!r} is neither a diffusers folder (with model_index.json) nor in the "
            f"local Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}). lycobench never downloads: "
            f"fetch the model on a machine with network access (e.g. `huggingface-cli download {path_or_id}`) and pass "
            f"model.path=/path/to/folder. ({type(e).__name__})"
        ) from None


def model_folder(model_cfg: DictConfig, cache_dir: Path) -> Path:
    cfg = OmegaConf.to_container(model_cfg, resolve=True)
    if cfg["kind"] == "tiny":
        folder = Path(cache_dir) / "models" / f"tiny-{content_key(cfg)}"
        if not (folder / "model_index.json").is_file():
            _save_atomically(build_tiny_pipeline(cfg), folder)
        return folder
    if cfg["kind"] == "pretrained":
        return resolve_pretrained(cfg["path"])
    if cfg["kind"] == "world":
        return world_folder(cfg.get("path"))
    raise ValueError(f"unknown model.kind {cfg['kind']!r} (expected tiny, pretrained or world)")


def world_folder(path: str | None = None) -> Path:
    """The embedded world's base model: the shipped folder (or ``path``), never built on the fly."""
    folder = (
        Path(path).expanduser() if path else Path(__file__).resolve().parent / "world" / "weights" / "base"
    )
    if not (folder / "model_index.json").is_file():
        raise ModelNotFound(
            f"the world base model is missing: {folder} has no model_index.json (conf/model/world.yaml). "
            "Run `python -m lycobench world pretrain` to train it (under an hour on 2 CPU cores; add "
            "`--minutes 106` for the shipped model's longer recipe)."
        )
    return folder


def _save_atomically(pipe, folder: Path) -> None:
    import shutil
    import tempfile

    from .tokenizer import save_tokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(pipe.tokenizer, tmp / "tokenizer")
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "model_index.json").is_file():  # another worker may have won the race
            raise


DTYPES = ("float32", "float16", "bfloat16")


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``auto``/None: float16 on CUDA (SD 1.5's usual inference precision), float32 on the CPU."""
    if dtype in (None, "auto"):
        return "float16" if str(device).startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose auto or one of {', '.join(DTYPES)}")
    if dtype != "float32" and not str(device).startswith("cuda"):
        raise ValueError(
            f"dtype {dtype!r} needs a CUDA device (half-precision sampling on the CPU is slow and lossy)"
        )
    return dtype


def load_pipeline(model_cfg: DictConfig, cache_dir: Path, device: str = "cpu", dtype: str | None = None):
    """The pipeline on ``device``: float32 on the CPU; on CUDA float16 (or ``dtype``) with PyTorch's fused
    scaled-dot-product attention. Every model kind takes this one path (``from_pretrained``, offline)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    folder = model_folder(model_cfg, cache_dir)
    torch_dtype = getattr(torch, resolve_dtype(dtype, device))
    pipe = StableDiffusionPipeline.from_pretrained(
        folder,
        safety_checker=None,
        requires_safety_checker=False,
        local_files_only=True,
        dtype=torch_dtype,
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if str(device).startswith("cuda"):
        from diffusers.models.attention_processor import AttnProcessor2_0

        # SDPA explicitly (flash / memory-efficient kernels), so no silent fallback to the slow path
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
    return pipe.to(device)
