"""The registry of encoder kinds (``KINDS``, filled by the ``kind`` decorator): each builds an encoder
from its role's configuration, from local weight files only."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import PROJECT_ROOT
from ..store import content_key, weights_identity
from .base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipEncoder,
    DinoEncoder,
    Encoder,
    GramEncoder,
    OracleEncoder,
    WorldModelEncoder,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("lycobench")


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
        f"Gram matrices at layers {list(c['taps'])} (conv outputs; all but the last read after the in-place "
        "ReLU that follows)",
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
        f"torchvision VGG-19 (IMAGENET1K_V1), Gram matrices at features{list(c['taps'])} (conv1_1 ... conv5_1; "
        "conv1_1-conv4_1 read after their in-place ReLU, conv5_1 before, as in the paper's code)",
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

    from ..world.concepts import leaf_names, load_concepts
    from ..world.oracle import Oracle, OracleNet, head_classes

    torch.manual_seed(int(cfg["init_seed"]))
    classes = head_classes(leaf_names(load_concepts()))
    net = OracleNet({k: len(v) for k, v in classes.items()})
    return Oracle(net, {"heads": classes})


def _shipped_oracle(cfg: dict):
    from ..world.concepts import load_concepts
    from ..world.oracle import Oracle

    oracle = Oracle.load(resolve_path(cfg.get("path")))
    oracle.check_leaves(load_concepts())
    return oracle


@kind(
    "world_clip",
    lambda c: (
        "the world CLIP-style model (open_clip, trained on world renders; lycobench/world/clip_dino.py), "
        "projected image and text features",
        "letterbox to a square, area-resize to 32 px, CLIP mean/std; open_clip tokenizer, 77 tokens",
    ),
    "an open_clip folder (open_clip_config.json + open_clip_model.safetensors) as encoders.<role>.path; "
    "`python -m lycobench world pretrain --what encoders` writes it",
)
def world_clip(cfg: dict, device: str) -> WorldModelEncoder:
    from ..world.clip_dino import load_world_clip

    return _world_encoder("clip", load_world_clip, cfg, device)


@kind(
    "world_dino",
    lambda c: (
        "the world DINO-style model (transformers Dinov2Model trained on world renders; "
        "lycobench/world/clip_dino.py), pooler output",
        "letterbox to a square, area-resize to 32 px, ImageNet mean/std",
    ),
    "a transformers Dinov2Model folder (config.json + model.safetensors) as encoders.<role>.path; "
    "`python -m lycobench world pretrain --what encoders` writes it",
)
def world_dino(cfg: dict, device: str) -> WorldModelEncoder:
    from ..world.clip_dino import load_world_dino

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
        "the world oracle (lycobench/world/oracle.py; heads shapes, colours, count, bg_colour, pattern, leaf)",
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
        f"the world oracle's conv layers, Gram matrices at layers {list(c['taps'])} (after batch norm; all "
        "but the last read after the in-place ReLU that follows)",
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
