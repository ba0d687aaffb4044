"""The metric encoders (the feature extractors the metrics read): registry and per-image feature cache.

Not to be confused with lycobench.world.clip_dino, which trains and loads the world's own CLIP- and
DINO-style models (one kind here, ``world_clip`` / ``world_dino``, loads them).

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

Modules: base (encoder classes, preprocessing), kinds (the registry), load (sets, weights, feature cache).
"""

from .base import (
    FEATURES_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ROLES,
    ClipEncoder,
    DinoEncoder,
    Encoder,
    GramEncoder,
    OracleEncoder,
    WorldModelEncoder,
    gram_vector,
    letterbox,
    short_side,
    to_tensor,
)
from .kinds import KINDS, Kind, kind, resolve_path
from .load import (
    check_weights,
    describe,
    encoders_identity,
    image_features,
    image_keys,
    load_clip,
    load_encoder,
    pick_device,
    role_config,
    text_features,
)

__all__ = [
    "FEATURES_VERSION", "IMAGENET_MEAN", "IMAGENET_STD", "ROLES", "ClipEncoder", "DinoEncoder", "Encoder",
    "GramEncoder", "OracleEncoder", "WorldModelEncoder", "gram_vector", "letterbox", "short_side", "to_tensor",
    "KINDS", "Kind", "kind", "resolve_path", "check_weights", "encoders_identity", "describe", "image_features",
    "image_keys", "load_clip", "load_encoder", "pick_device", "role_config", "text_features",
]  # fmt: skip
