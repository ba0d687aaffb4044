"""Encoder registry and the per-image feature cache.

An encoder set (``conf/encoders/<name>.yaml``) names one encoder per *role*:

- ``clip``: image-text model (text similarity); OpenCLIP ViT-L/14 DataComp-XL in the paper
- ``dino``: self-supervised image model (image similarity, SCD, Vendi, FD/KID, drift, copies); DINOv2 ViT-L/14
- ``style``: convolutional taps whose Gram matrices give the style loss; VGG-19 conv1_1..conv5_1
- ``oracle``: the embedded world's classifier (oracle scores); only the world has one

Each role's ``kind`` picks a builder from ``KINDS`` (a dict filled by the ``kind`` decorator); a role set to
null is absent and the metrics that need it are skipped. Weights are read from local files only: missing
files give one error listing every missing file and how to provide it.

Features are computed once per (encoder, image bytes) and cached as .npy under
``cache/features/<encoder key>/``, where the key hashes the encoder's configuration, weights and
preprocessing; metrics recomputed from the cache are bit-identical.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .config import PROJECT_ROOT
from .store import atomic_write_with, content_key

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
    Preprocessing: shorter side to ``size`` (aspect kept), then normalisation by ``mean``/``std``."""

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

        from .world.oracle import decode

        logits, start = {}, 0
        for head, names in self.oracle.classes.items():
            logits[head] = torch.from_numpy(np.asarray(features[:, start : start + len(names)]))
            start += len(names)
        if len(features) == 0:
            return []
        cols = decode(logits, self.oracle.classes)
        return [{k: v[i] for k, v in cols.items()} for i in range(len(features))]


class WorldModelEncoder(Encoder):
    """A world encoder object from ``lycobench.world.encoders`` (``encode_images(uint8 [N,H,W,3])`` and, for
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


# --- registry of kinds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    build: Callable[[dict, str], Encoder]  # (role config, device) -> encoder
    describe: Callable[[dict], tuple[str, str]]  # (model, preprocessing) in words, for the metric cards
    weights: str = ""  # how to provide the weights, for kinds that read files ('' = none needed)


KINDS: dict[str, Kind] = {}


def kind(name: str, describe: Callable[[dict], tuple[str, str]], weights: str = ""):
    def register(fn):
        KINDS[name] = Kind(fn, describe, weights)
        return fn

    return register


def resolve_path(path: str | None) -> Path | None:
    """A configured path: absolute, else relative to the working directory, else to the project root."""
    if not path:
        return None
    p = Path(str(path)).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (PROJECT_ROOT / p).resolve()


def weights_identity(path: Path) -> dict:
    """Size and hashes of the first and last MiB of each weights file: cheap, and changes with the weights."""
    files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
    out = {}
    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(1 << 20)
            fh.seek(max(0, f.stat().st_size - (1 << 20)))
            tail = fh.read()
        out[str(f.relative_to(path)) if path.is_dir() else f.name] = [
            f.stat().st_size,
            hashlib.sha256(head + tail).hexdigest()[:16],
        ]
    return out


@kind(
    "open_clip_random",
    lambda c: (
        f"seeded random open_clip model (embed_dim {c['model_cfg']['embed_dim']}; a fixture, no meaning)",
        f"letterbox, open_clip's transform at {c['model_cfg']['vision_cfg']['image_size']} px; 77 tokens",
    ),
)
def open_clip_random(cfg: dict, device: str) -> ClipEncoder:
    import open_clip
    import torch

    name = f"lycobench-{content_key(cfg['model_cfg'], 10)}"
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / f"{name}.json").write_text(json.dumps(cfg["model_cfg"]))
        open_clip.add_model_config(d)
        torch.manual_seed(int(cfg["init_seed"]))
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # random init is the point: silence its warning
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
        finally:
            root.setLevel(level)
    desc = KINDS["open_clip_random"].describe(cfg)[0]
    return ClipEncoder(model, preprocess, open_clip.get_tokenizer(name), {"clip": cfg}, desc, device)


@kind(
    "open_clip",
    lambda c: (
        " ".join(filter(None, ["OpenCLIP", c.get("model") or "(open_clip_config.json)", c.get("pretrained")]))
        + ", projected image and text features",
        "letterbox to a square, then open_clip's transform (the model's size, 224 px for ViT-L-14; bicubic, "
        "centre crop, CLIP mean/std); open_clip tokenizer, 77 tokens (longer prompts truncated)",
    ),
    "a file (open_clip_pytorch_model.bin or .safetensors) as encoders.<role>.path, with "
    "encoders.<role>.model naming its architecture (or encoders.<role>.model_config a JSON config), or a "
    "folder holding open_clip_config.json and the weights",
)
def open_clip_pretrained(cfg: dict, device: str) -> ClipEncoder:
    import open_clip

    path = resolve_path(cfg.get("path"))
    if path.is_dir():  # open_clip's folder layout: open_clip_config.json + weights
        spec, name, pretrained = f"local-dir:{path}", f"local-dir:{path}", None
    else:
        name = cfg["model"]
        if cfg.get("model_config"):  # an architecture open_clip does not ship: register its JSON first
            config = resolve_path(cfg["model_config"])
            open_clip.add_model_config(config)
            name = config.stem
        spec, pretrained = name, str(path)
    model, _, preprocess = open_clip.create_model_and_transforms(spec, pretrained=pretrained)
    identity = {"clip": {**cfg, "path": str(path), "weights": weights_identity(path)}}
    desc = KINDS["open_clip"].describe(cfg)[0]
    return ClipEncoder(model, preprocess, open_clip.get_tokenizer(name), identity, desc, device)


@kind(
    "dinov2_random",
    lambda c: (
        f"seeded random transformers Dinov2Model (hidden {c['config']['hidden_size']}, "
        f"{c['config']['num_hidden_layers']} layers; a fixture, no meaning), pooler output",
        f"letterbox to {c['image_size']} px (bicubic, black padding), ImageNet mean/std",
    ),
)
def dinov2_random(cfg: dict, device: str) -> DinoEncoder:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(int(cfg["init_seed"]))
    model = Dinov2Model(Dinov2Config(**cfg["config"]))
    return DinoEncoder(
        model, cfg["image_size"], {"dino": cfg}, KINDS["dinov2_random"].describe(cfg)[0], device
    )


@kind(
    "dinov2",
    lambda c: (
        f"{c.get('model') or 'DINOv2'} as transformers Dinov2Model, pooler output (final-norm CLS token)",
        f"letterbox to {c.get('image_size', 224)} px (bicubic, black padding; square images are just "
        "resized), ImageNet mean/std",
    ),
    "a folder written by transformers' save_pretrained (config.json + model.safetensors), e.g. a "
    "local copy of facebook/dinov2-large, as encoders.<role>.path",
)
def dinov2_pretrained(cfg: dict, device: str) -> DinoEncoder:
    from transformers import Dinov2Model

    path = resolve_path(cfg.get("path"))
    model = Dinov2Model.from_pretrained(str(path), local_files_only=True)
    identity = {"dino": {**cfg, "path": str(path), "weights": weights_identity(path)}}
    desc = KINDS["dinov2"].describe(cfg)[0]
    return DinoEncoder(model, cfg.get("image_size", 224), identity, desc, device, bool(cfg.get("autocast")))


def _vgg_preprocessing(c: dict) -> str:
    return f"shorter side to {c.get('size', 224)} px (bicubic, aspect kept), ImageNet mean/std"


@kind(
    "vgg_random",
    lambda c: (
        f"seeded random conv stack (torchvision VGG make_layers {list(c['layers'])}; a fixture, no meaning), "
        f"Gram matrices at layers {list(c['taps'])} (conv outputs before ReLU)",
        _vgg_preprocessing(c),
    ),
)
def vgg_random(cfg: dict, device: str) -> GramEncoder:
    import torch
    from torchvision.models.vgg import make_layers

    torch.manual_seed(int(cfg["init_seed"]))
    layers = make_layers(list(cfg["layers"]))
    desc = KINDS["vgg_random"].describe(cfg)[0]
    return GramEncoder(
        layers, cfg["taps"], cfg.get("size", 224), IMAGENET_MEAN, IMAGENET_STD, {"style": cfg}, desc, device
    )


@kind(
    "vgg19",
    lambda c: (
        f"torchvision VGG-19 (IMAGENET1K_V1), Gram matrices at features{list(c['taps'])} (conv1_1 ... conv5_1, "
        "before ReLU)",
        _vgg_preprocessing(c),
    ),
    "torchvision's vgg19-dcbb9e9d.pth (a state dict; only the features.* entries are used) or the same "
    "entries as .safetensors, as encoders.<role>.path",
)
def vgg19_pretrained(cfg: dict, device: str) -> GramEncoder:
    from torchvision.models.vgg import cfgs, make_layers

    path = resolve_path(cfg.get("path"))
    state = _load_state(path)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    layers = make_layers(cfgs["E"])  # VGG-19's feature stack; the classifier is never needed
    result = layers.load_state_dict(features, strict=False)
    if result.missing_keys or result.unexpected_keys or not features:
        raise ValueError(
            f"{path}: not a VGG-19 state dict (missing {result.missing_keys[:4]}, unexpected "
            f"{result.unexpected_keys[:4]}); pass torchvision's vgg19 weights file"
        )
    identity = {"style": {**cfg, "path": str(path), "weights": weights_identity(path)}}
    desc = KINDS["vgg19"].describe(cfg)[0]
    return GramEncoder(
        layers, cfg["taps"], cfg.get("size", 224), IMAGENET_MEAN, IMAGENET_STD, identity, desc, device
    )


def _load_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _random_oracle(cfg: dict):
    import torch

    from .world.concepts import leaf_names, load_concepts
    from .world.oracle import Oracle, OracleNet, head_classes

    torch.manual_seed(int(cfg["init_seed"]))
    classes = head_classes(leaf_names(load_concepts()))
    net = OracleNet({k: len(v) for k, v in classes.items()})
    return Oracle(net, {"heads": classes})


def _shipped_oracle(cfg: dict):
    from .world.concepts import load_concepts
    from .world.oracle import Oracle

    oracle = Oracle.load(resolve_path(cfg.get("path")))
    oracle.check_leaves(load_concepts())
    return oracle


@kind(
    "world_clip",
    lambda c: (
        "the world CLIP-style model (open_clip, trained on world renders; lycobench/world/encoders.py), "
        "projected image and text features",
        "letterbox to a square, area-resize to 32 px, CLIP mean/std; open_clip tokenizer, 77 tokens",
    ),
    "an open_clip folder (open_clip_config.json + open_clip_model.safetensors) as encoders.<role>.path; "
    "`python -m lycobench world pretrain --what encoders` writes it",
)
def world_clip(cfg: dict, device: str) -> WorldModelEncoder:
    from .world.encoders import load_world_clip

    return _world_encoder("clip", load_world_clip, cfg, device)


@kind(
    "world_dino",
    lambda c: (
        "the world DINO-style model (transformers Dinov2Model trained on world renders; "
        "lycobench/world/encoders.py), pooler output",
        "letterbox to a square, area-resize to 32 px, ImageNet mean/std",
    ),
    "a transformers Dinov2Model folder (config.json + model.safetensors) as encoders.<role>.path; "
    "`python -m lycobench world pretrain --what encoders` writes it",
)
def world_dino(cfg: dict, device: str) -> WorldModelEncoder:
    from .world.encoders import load_world_dino

    return _world_encoder("dino", load_world_dino, cfg, device)


def _world_encoder(role: str, load, cfg: dict, device: str) -> WorldModelEncoder:
    """A shipped world encoder folder, identified by its settings and weight files."""
    path = resolve_path(cfg.get("path"))
    identity = {role: {**cfg, "path": str(path), "weights": weights_identity(path)}}
    desc = KINDS[f"world_{role}"].describe(cfg)[0]
    return WorldModelEncoder(load(path, device), role, identity, desc, device)


@kind(
    "oracle_random",
    lambda c: (
        "seeded random world oracle network (the real class and heads, untrained; a fixture, no meaning)",
        "letterbox to a square, area-resize to 32 px",
    ),
)
def oracle_random(cfg: dict, device: str) -> OracleEncoder:
    return OracleEncoder(_random_oracle(cfg), {"oracle": cfg}, KINDS["oracle_random"].describe(cfg)[0])


@kind(
    "oracle",
    lambda c: (
        "the world oracle (lycobench/world/oracle.py; heads shapes, colours, count, bg_colour, pattern, "
        "style, size, position, leaf)",
        "letterbox to a square, area-resize to 32 px",
    ),
    "lycobench/world/weights/oracle.safetensors + .json; `python -m lycobench world oracle-train` writes them",
)
def oracle_pretrained(cfg: dict, device: str) -> OracleEncoder:
    path = resolve_path(cfg.get("path"))
    identity = {"oracle": {**cfg, "path": str(path), "weights": weights_identity(path)}}
    return OracleEncoder(_shipped_oracle(cfg), identity, KINDS["oracle"].describe(cfg)[0])


def _flat_conv_layers(net):
    """OracleNet.features (blocks of conv, batch norm, ReLU, with pools between) as one flat Sequential."""
    import torch

    flat = []
    for m in net.features:
        flat.extend(m if isinstance(m, torch.nn.Sequential) else [m])
    return torch.nn.Sequential(*flat)


@kind(
    "oracle_taps",
    lambda c: (
        f"the world oracle's conv layers, Gram matrices at layers {list(c['taps'])} (after batch norm, "
        "before ReLU)",
        "shorter side to 32 px (bicubic), the oracle's normalisation (mean 0.5, std 0.25)",
    ),
    "lycobench/world/weights/oracle.safetensors + .json; `python -m lycobench world oracle-train` writes them",
)
def oracle_taps(cfg: dict, device: str) -> GramEncoder:
    path = resolve_path(cfg.get("path"))
    layers = _flat_conv_layers(_shipped_oracle(cfg).net)
    identity = {"style": {**cfg, "path": str(path), "weights": weights_identity(path)}}
    desc = KINDS["oracle_taps"].describe(cfg)[0]
    return GramEncoder(layers, cfg["taps"], 32, (0.5,) * 3, (0.25,) * 3, identity, desc, device)


# --- loading -----------------------------------------------------------------------------------------


def role_config(encoders_cfg: DictConfig | dict, role: str) -> dict | None:
    cfg = (
        encoders_cfg if isinstance(encoders_cfg, dict) else OmegaConf.to_container(encoders_cfg, resolve=True)
    )
    node = cfg.get(role)
    if node is not None and node.get("kind") not in KINDS:
        raise ValueError(
            f"encoders.{role}.kind={node.get('kind')!r} (conf/encoders/{cfg.get('name')}.yaml): known kinds are "
            f"{', '.join(KINDS)}"
        )
    return node


def check_weights(encoders_cfg: DictConfig | dict, roles) -> None:
    """One error naming every missing weights file of the given roles, and how to provide each."""
    name = encoders_cfg.get("name")
    problems = []
    for role in roles:
        node = role_config(encoders_cfg, role)
        k = KINDS[node["kind"]] if node else None
        if node is None or not k.weights:
            continue
        path = resolve_path(node.get("path"))
        exists = path is not None and (path.is_dir() or path.is_file())
        if exists and node["kind"] in ("oracle", "oracle_taps") and not path.with_suffix(".json").is_file():
            exists = False
        if not exists:
            if path is None:
                where = "not set"
            elif Path(str(node["path"])).expanduser().is_absolute():
                where = f"{path} does not exist"
            else:
                where = f"{node['path']} found neither in the working directory nor under {PROJECT_ROOT}"
            hint = node.get("provide") or k.weights.replace("<role>", role)
            problems.append(f"encoders.{role}.path: {where}; provide {hint}")
    if problems:
        raise FileNotFoundError(
            f"encoder weights missing for encoders={name} (conf/encoders/{name}.yaml); lycobench never downloads "
            "weights:\n  - " + "\n  - ".join(problems)
        )


def pick_device(encoders_cfg) -> str:
    want = str(encoders_cfg.get("device", "auto") or "auto")
    if want == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return want


def load_encoder(encoders_cfg: DictConfig | dict, role: str) -> Encoder | None:
    """The encoder of one role, or None when the set has none for it (``encoders.<role>: null``)."""
    node = role_config(encoders_cfg, role)
    if node is None:
        return None
    check_weights(encoders_cfg, [role])
    node = {k: v for k, v in node.items() if k != "provide"}  # words for the error, not part of the identity
    return KINDS[node["kind"]].build(node, pick_device(encoders_cfg))


def load_clip(encoders_cfg: DictConfig) -> ClipEncoder:
    enc = load_encoder(encoders_cfg, "clip")
    if enc is None:
        raise ValueError(f"encoders={encoders_cfg.get('name')} has no clip encoder")
    return enc


def describe(encoders_cfg: dict, role: str) -> tuple[str, str] | None:
    """(model, preprocessing) of a role in words (for metric cards), without loading it; None if absent."""
    node = role_config(encoders_cfg, role)
    return None if node is None else KINDS[node["kind"]].describe(node)


# --- the feature cache ----------------------------------------------------------------------------------


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to a temp path
        np.save(fh, array)


def image_keys(paths: list[Path]) -> list[str]:
    """Cache keys of image files: a hash of their bytes."""
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest()[:32] for p in paths]


def image_features(
    encoder: Encoder, paths: list[Path], cache_dir: Path, batch_size: int = 64, keys: list[str] | None = None
) -> np.ndarray:
    """Features of image files, through the cache keyed by (encoder, image bytes); always read back from
    the cache, so a first computation and a later one give the same bits. ``keys`` (``image_keys(paths)``)
    saves hashing the files again for each encoder."""
    from PIL import Image

    folder = Path(cache_dir) / "features" / encoder.key
    keys = image_keys(paths) if keys is None else keys
    files = [folder / f"{k}.npy" for k in keys]
    todo = sorted({k: i for i, (k, f) in enumerate(zip(keys, files)) if not f.is_file()}.values())
    if len(todo) > batch_size:
        log.info(
            "features %s (%s): %d of %d images to encode", encoder.role, encoder.key, len(todo), len(paths)
        )
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        ims = []
        for i in idx:
            with Image.open(paths[i]) as im:
                ims.append(im.convert("RGB"))
        for i, f in zip(idx, encoder.encode_images(ims)):
            atomic_write_with(files[i], lambda tmp, f=f: _save_npy(tmp, np.asarray(f, np.float32)))
    if not files:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.load(f) for f in files])


def text_features(encoder: ClipEncoder, texts: list[str], cache_dir: Path, batch_size: int = 256) -> dict:
    """Features of distinct texts, cached like image features; returns text -> feature row."""
    folder = Path(cache_dir) / "features" / f"{encoder.key}-text"
    unique = sorted(set(texts))
    files = {t: folder / f"{hashlib.sha256(t.encode()).hexdigest()[:32]}.npy" for t in unique}
    todo = [t for t in unique if not files[t].is_file()]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        for t, f in zip(chunk, encoder.encode_texts(chunk)):
            atomic_write_with(files[t], lambda tmp, f=f: _save_npy(tmp, np.asarray(f, np.float32)))
    return {t: np.load(files[t]) for t in unique}
