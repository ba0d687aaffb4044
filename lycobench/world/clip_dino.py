"""The world's metric encoders, ready to use: ``load_world_clip()`` and ``load_world_dino()``.

Both read the weights shipped under ``lycobench/world/weights/`` (or a given folder), offline, and return a
small object holding the model and its preprocessing:

- ``WorldClip``: an open_clip image-text model trained contrastively on world renders and class-word
  captions (``lycobench/world/pretrain/clip_model.py``). ``encode_images(uint8 [N,H,W,3])`` and
  ``encode_texts(list[str])`` give float32 projected features [N, 64] (not normalised; cosine = CLIP score).
  ``model``, ``preprocess`` (open_clip's PIL transform) and ``tokenizer`` are the open_clip objects.
- ``WorldDino``: a transformers ``Dinov2Model`` trained self-supervised on renders
  (``lycobench/world/pretrain/dino.py``). ``encode_images(uint8 [N,H,W,3])`` gives float32
  ``pooler_output`` [N, 96]; inputs are resized to 32 px and ImageNet-normalised.

Images of any square size are area-downsampled (or bilinearly upsampled) to 32 px, the world's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

WEIGHTS = Path(__file__).resolve().parent / "weights"
CLIP_DIR = WEIGHTS / "clip"
DINO_DIR = WEIGHTS / "dino"
SIZE = 32
_RETRAIN = "run `python -m lycobench world pretrain --what encoders` to train and write them"


def _to_32(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,32,32] in [0,1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] > SIZE:
        return F.interpolate(x, size=(SIZE, SIZE), mode="area")
    if x.shape[-1] < SIZE:
        return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return x


@dataclass
class WorldClip:
    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    folder: Path

    @torch.no_grad()
    def encode_images(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        from .pretrain.clip_model import normalise

        out = [
            self.model.encode_image(normalise(_to_32(images[i : i + batch])))
            for i in range(0, len(images), batch)
        ]
        return torch.cat(out).float().numpy()

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch: int = 256) -> np.ndarray:
        out = [
            self.model.encode_text(self.tokenizer(texts[i : i + batch])) for i in range(0, len(texts), batch)
        ]
        return torch.cat(out).float().numpy()


@dataclass
class WorldDino:
    model: torch.nn.Module
    image_size: int
    folder: Path

    @torch.no_grad()
    def encode_images(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        from .pretrain.dino import normalise

        out = [
            self.model(pixel_values=normalise(_to_32(images[i : i + batch]))).pooler_output
            for i in range(0, len(images), batch)
        ]
        return torch.cat(out).float().numpy()


def _need(folder: Path, files: list[str], what: str) -> None:
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{what} weights missing in {folder} ({', '.join(missing)}); {_RETRAIN}")


def load_world_clip(folder: Path | str | None = None, device: str = "cpu") -> WorldClip:
    """The world CLIP from ``folder`` (default: the shipped ``lycobench/world/weights/clip``), fp32, eval mode."""
    import open_clip

    from .pretrain.clip_model import WEIGHTS_NAME

    folder = Path(folder) if folder is not None else CLIP_DIR
    _need(folder, ["open_clip_config.json", WEIGHTS_NAME], "world CLIP")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    return WorldClip(model.float().eval().to(device), preprocess, tokenizer, folder)


def load_world_dino(folder: Path | str | None = None, device: str = "cpu") -> WorldDino:
    """The world DINO-style encoder from ``folder`` (default: the shipped ``lycobench/world/weights/dino``)."""
    from transformers import Dinov2Model

    folder = Path(folder) if folder is not None else DINO_DIR
    _need(folder, ["config.json", "model.safetensors"], "world DINO-style encoder")
    model = Dinov2Model.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    return WorldDino(model.float().eval().to(device), int(model.config.image_size), folder)
