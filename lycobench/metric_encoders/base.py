"""The encoder classes of the four roles (CLIP-style, DINO-style, Gram taps, oracle, world models) and
the image preprocessing they share."""

from __future__ import annotations

import functools
import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from ..store import content_key

if TYPE_CHECKING:
    import torch

log = logging.getLogger("lycobench")


ROLES = ("clip", "dino", "style", "oracle")
FEATURES_VERSION = 1  # bump when preprocessing or feature extraction code changes
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torch is imported where it is used: the configuration checks (``check_weights``) run in the sweep's
# preflight, which must stay fast and never load a model.


def _no_grad(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return run


# --- preprocessing ---------------------------------------------------------------------------------


def letterbox(im, size: int):
    """Longer side to ``size`` (bicubic), centred on a black square: the paper's padding for dataset
    images. A square image is simply resized, as the paper does with generated images."""
    from PIL import Image

    w, h = im.size
    if w == h:
        return im.resize((size, size), Image.BICUBIC) if w != size else im
    s = size / max(w, h)
    inner = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    out = Image.new("RGB", (size, size), (0, 0, 0))
    out.paste(inner, ((size - inner.size[0]) // 2, (size - inner.size[1]) // 2))
    return out


def short_side(im, size: int):
    """Shorter side to ``size`` (bicubic), aspect ratio kept: the paper's VGG preprocessing."""
    from PIL import Image

    w, h = im.size
    s = size / min(w, h)
    new = (max(1, round(w * s)), max(1, round(h * s)))
    return im if new == (w, h) else im.resize(new, Image.BICUBIC)


def to_tensor(im, mean, std) -> torch.Tensor:
    import torch

    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def _libraries() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for lib in ("torch", "torchvision", "transformers", "open_clip_torch"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


def _by_shape(tensors: list[torch.Tensor]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    return groups


# --- encoders --------------------------------------------------------------------------------------


class Encoder:
    """Images (PIL, RGB) -> one float32 feature row each. ``key`` names the cache folder."""

    role = ""

    def __init__(self, identity: dict, description: str, device: str = "cpu"):
        # description: the model in words (provenance); the key covers the configuration, the weights, the
        # preprocessing code and the libraries, so a change in any of them makes new features
        self.identity = {**identity, "features_version": FEATURES_VERSION, "libraries": _libraries()}
        self.key = content_key(self.identity)
        self.description = description
        self.device = device

    def encode_images(self, images: list) -> np.ndarray:
        raise NotImplementedError


class ClipEncoder(Encoder):
    """An open_clip image-text model. Images are letterboxed to a square first (a no-op for the square
    generated images), then go through open_clip's own transform."""

    role = "clip"

    def __init__(self, model, preprocess, tokenizer, identity: dict, description: str, device: str = "cpu"):
        super().__init__(identity, description, device)
        self.model, self.preprocess, self.tokenizer = model.eval().to(device), preprocess, tokenizer
        self.size = _transform_size(preprocess)

    @_no_grad
    def encode_images(self, images: list) -> np.ndarray:
        import torch

        x = torch.stack([self.preprocess(letterbox(im, self.size)) for im in images]).to(self.device)
        return self.model.encode_image(x).float().cpu().numpy()

    @_no_grad
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu().numpy()


def _transform_size(preprocess) -> int:
    for t in getattr(preprocess, "transforms", []):
        size = getattr(t, "size", None)
        if size is not None:
            return int(size if isinstance(size, int) else max(size))
    return 224


class DinoEncoder(Encoder):
    """A transformers ``Dinov2Model``; the feature is ``pooler_output`` (the final-norm CLS token, what
    ``torch.hub`` dinov2 models return). Letterbox to ``image_size`` (bicubic), ImageNet mean/std."""

    role = "dino"

    def __init__(
        self, model, image_size: int, identity: dict, description: str, device="cpu", autocast=False
    ):
        super().__init__(identity, description, device)
        self.model, self.size, self.autocast = model.eval().to(device), int(image_size), autocast

    @_no_grad
    def encode_images(self, images: list) -> np.ndarray:
        import torch

        x = torch.stack([to_tensor(letterbox(im, self.size), IMAGENET_MEAN, IMAGENET_STD) for im in images])
        # the paper runs DINOv2 under autocast; on CPU lycobench stays in float32 (deterministic)
        with torch.autocast("cuda", enabled=self.autocast and self.device.startswith("cuda")):
            out = self.model(pixel_values=x.to(self.device)).pooler_output
        return out.float().cpu().numpy()


def gram_vector(acts: list[torch.Tensor]) -> torch.Tensor:
    """Gram matrices of conv activations [B, c, h, w], G = psi psi^T / (c h w), as one row per image: the
    upper triangle of each G with off-diagonal entries times sqrt(2), so that the squared Euclidean
    distance of two rows is the sum over taps of the squared Frobenius distances of the Gram matrices."""
    import torch

    parts = []
    for a in acts:
        b, c, h, w = a.shape
        f = a.reshape(b, c, h * w).float()
        g = f @ f.transpose(1, 2) / (c * h * w)
        i, j = torch.triu_indices(c, c)
        scale = torch.where(i == j, 1.0, math.sqrt(2.0)).to(g.device)
        parts.append(g[:, i, j] * scale)
    return torch.cat(parts, dim=1)


class GramEncoder(Encoder):
    """Gram vectors of the activations at ``taps`` (indices into a flat ``nn.Sequential``).
    Preprocessing: shorter side to ``size`` (aspect kept), then normalisation by ``mean``/``std``.

    A tap keeps a reference to its layer's output, and a following ``ReLU(inplace=True)`` (torchvision's
    VGG, the oracle) rectifies that tensor in place: every tap but the last is read after its ReLU. The
    paper's authors' encoder does the same (their numbers were made so), so it is kept and the cards say
    it; ``tests/test_encoders.py`` pins it."""

    role = "style"

    def __init__(self, layers, taps, size, mean, std, identity: dict, description: str, device="cpu"):
        super().__init__(identity, description, device)
        self.layers, self.taps = layers.eval().to(device), sorted(int(t) for t in taps)
        self.size, self.mean, self.std = int(size), tuple(mean), tuple(std)

    @_no_grad
    def encode_images(self, images: list) -> np.ndarray:
        import torch

        xs = [to_tensor(short_side(im, self.size), self.mean, self.std) for im in images]
        out = np.zeros((len(xs), 0), np.float32)
        for idx in _by_shape(xs).values():  # dataset images can differ in shape
            h, acts = torch.stack([xs[i] for i in idx]).to(self.device), []
            for n, layer in enumerate(self.layers[: self.taps[-1] + 1]):
                h = layer(h)
                if n in self.taps:
                    acts.append(h)
            rows = gram_vector(acts).cpu().numpy()
            if out.shape[1] == 0:
                out = np.zeros((len(xs), rows.shape[1]), np.float32)
            out[idx] = rows
        return out


class OracleEncoder(Encoder):
    """The world oracle; the feature is the concatenation of its heads' logits (``decode`` reads it back)."""

    role = "oracle"

    def __init__(self, oracle, identity: dict, description: str, device: str = "cpu"):
        super().__init__(identity, description, device)
        self.oracle = oracle

    @_no_grad
    def encode_images(self, images: list) -> np.ndarray:
        import torch

        arrays = [np.asarray(letterbox(im, max(im.size)), dtype=np.uint8) for im in images]
        out = None
        for idx in _by_shape(arrays).values():
            logits = self.oracle.logits(np.stack([arrays[i] for i in idx]))
            rows = torch.cat([logits[k] for k in self.oracle.classes], dim=1).float().numpy()
            if out is None:
                out = np.zeros((len(arrays), rows.shape[1]), np.float32)
            out[idx] = rows
        return out if out is not None else np.zeros((0, 0), np.float32)

    def decode(self, features: np.ndarray) -> list[dict]:
        """Cached logits -> one prediction dict per image (head -> name; sets for shapes and colours)."""
        import torch

        from ..world.oracle import decode

        logits, start = {}, 0
        for head, names in self.oracle.classes.items():
            logits[head] = torch.from_numpy(np.asarray(features[:, start : start + len(names)]))
            start += len(names)
        if len(features) == 0:
            return []
        cols = decode(logits, self.oracle.classes)
        return [{k: v[i] for k, v in cols.items()} for i in range(len(features))]


class WorldModelEncoder(Encoder):
    """A world encoder object from ``lycobench.world.clip_dino`` (``encode_images(uint8 [N,H,W,3])`` and, for
    CLIP, ``encode_texts``), which applies the world's own preprocessing (area-resize to 32 px, its mean/std).
    Non-square images are letterboxed at their own size first."""

    def __init__(self, model, role: str, identity: dict, description: str, device: str = "cpu"):
        super().__init__(identity, description, device)
        self.model, self.role = model, role

    def encode_images(self, images: list) -> np.ndarray:
        arrays = [np.asarray(letterbox(im, max(im.size)), dtype=np.uint8) for im in images]
        out = None
        for idx in _by_shape(arrays).values():
            rows = self.model.encode_images(np.stack([arrays[i] for i in idx]))
            if out is None:
                out = np.zeros((len(arrays), rows.shape[1]), np.float32)
            out[idx] = rows
        return out if out is not None else np.zeros((0, 0), np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_texts(list(texts))
