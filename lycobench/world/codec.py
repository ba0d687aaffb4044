"""The world base model's autoencoder as a codec: what survives a trip through it.

Every image the generator draws comes out of this decoder, so the oracle is adapted to it and `world
check` bounds what a fine-tune can reach by a concept's round trip.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BASE_MODEL = WEIGHTS_DIR / "base"  # the world base model, whose autoencoder the oracle is adapted to


def load_codec(folder: Path | str | None = None):
    """The autoencoder of a world base model (a diffusers folder or its vae/ subfolder; default the shipped
    model's), float32, in eval mode."""
    from diffusers import AutoencoderKL

    folder = Path(folder) if folder is not None else BASE_MODEL
    sub = folder / "vae" if (folder / "vae").is_dir() else folder
    return AutoencoderKL.from_pretrained(str(sub), torch_dtype=torch.float32).eval()


def codec_identity(folder: Path | str | None = None) -> dict:
    """Which autoencoder the oracle was adapted to: its folder (relative to the package when shipped) and the
    sha256 of its weights."""
    folder = Path(folder) if folder is not None else BASE_MODEL
    sub = folder / "vae" if (folder / "vae").is_dir() else folder
    weights = sub / "diffusion_pytorch_model.safetensors"
    try:
        where = str(sub.resolve().relative_to(WEIGHTS_DIR.resolve()))
    except ValueError:
        where = sub.name
    return {"folder": where, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}


def codec_roundtrip(vae, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """uint8 [N,32,32,3] encoded to latent means and decoded again (the pretraining's own reconstruction)."""
    from .pretrain.vae import reconstruct

    return reconstruct(vae, images, batch) if len(images) else images
