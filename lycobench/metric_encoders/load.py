"""Loading an encoder set (weights checked first, one error for every missing file) and the per-image
feature cache."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..config import PROJECT_ROOT
from ..image_policy import IMAGE_POLICY, to_rgb
from ..store import atomic_write_with, weights_identity
from .base import FEATURES_VERSION, ROLES, ClipEncoder, Encoder, _libraries
from .kinds import KINDS, resolve_path

if TYPE_CHECKING:
    pass

log = logging.getLogger("lycobench")


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


def encoders_identity(encoders_cfg: DictConfig | dict) -> dict:
    """The encoder set's configuration with each role's weights identity: the evaluation key hashes it, so
    retrained or replaced encoder weights re-evaluate every run (a missing file is None here; loading
    then fails with check_weights' message)."""
    cfg = (
        encoders_cfg if isinstance(encoders_cfg, dict) else OmegaConf.to_container(encoders_cfg, resolve=True)
    )
    out = dict(cfg)
    out["features"] = {"version": FEATURES_VERSION, "libraries": _libraries()}  # as the feature cache keys
    for role in ROLES:
        node = role_config(cfg, role)
        if node is None or not KINDS[node["kind"]].weights:
            continue
        path = resolve_path(node.get("path"))
        found = path is not None and path.exists()
        out[role] = {**node, "weights": weights_identity(path) if found else None}
        sidecar = path.with_suffix(".json") if found and node["kind"] in ("oracle", "oracle_taps") else None
        if sidecar is not None and sidecar.is_file():  # the oracle's class names: part of what it reads
            out[role]["classes"] = weights_identity(sidecar)
    return out


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
    """Cache keys of image files: a hash of their bytes, tagged for a file that the image policy reads
    otherwise than a plain RGB conversion (transparency, 16 bits, palette, EXIF rotation), so that features
    cached before evaluation read images by the policy are not reused for it. Plain RGB files (every
    generated image, the world's renders) keep their keys and their cached features."""
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest()[:32] + _policy_tag(Path(p)) for p in paths]


POLICY_TAG = "-" + hashlib.sha256(IMAGE_POLICY.encode()).hexdigest()[:8]  # a new policy, new keys


def _policy_tag(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:  # the header only
        plain = im.mode == "RGB" and im.getexif().get(0x0112, 1) == 1  # 0x0112: EXIF orientation
    return "" if plain else POLICY_TAG


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
            with Image.open(paths[i]) as im:  # as training reads them: upright, transparency on white
                ims.append(to_rgb(im))
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
