"""Resumable training state as one safetensors file: tensors as tensors, everything else as JSON.

A training state (optimiser, scheduler, random-number states, the log so far) is a tree of dicts, lists,
tuples, numbers, strings, paths, numpy arrays and tensors. :func:`save_state` stores its tensors in a
safetensors file and the rest of the tree as JSON in that file's metadata; :func:`load_state` rebuilds the
tree. Nothing is unpickled, so a crafted file can at worst be refused (:class:`StateFileError`, which names
the file and says to delete it: the stage that wrote it then starts over), never run code.

The JSON keeps what plain JSON would lose: tuples, dicts with non-string keys (an optimiser's state is keyed
by parameter index), paths, numpy arrays and integers of any size (numpy's PCG64 state is 128-bit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .store import atomic_write_with

FORMAT = "lycobench.state/1"
_META_FORMAT = "format"
_META_TREE = "tree"


class StateFileError(ValueError):
    """A state file that cannot be read back (not this format, damaged, or of an unknown layout)."""


def save_state(path: Path, state: dict) -> Path:
    """Write ``state`` to ``path`` (safetensors + JSON metadata), atomically."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    metadata = {_META_FORMAT: FORMAT, _META_TREE: json.dumps(tree, allow_nan=True)}

    def write(tmp: Path) -> None:
        from safetensors.torch import save_file

        save_file(tensors, str(tmp), metadata=metadata)

    return atomic_write_with(path, write)


def load_state(path: Path) -> dict:
    """The state saved at ``path`` by :func:`save_state`; :class:`StateFileError` for anything else."""
    from safetensors import safe_open

    path = Path(path)
    fix = f"delete {path}: the stage that wrote it then starts over"
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            names = f.keys()  # (a safe_open handle is not iterable)
            tensors = {k: f.get_tensor(k) for k in names}
    except FileNotFoundError:
        raise
    except Exception as e:  # not safetensors: a pickle, a truncated file, anything else
        raise StateFileError(f"{path}: not a lycobench state file ({type(e).__name__}: {e}); {fix}") from e
    if metadata.get(_META_FORMAT) != FORMAT:
        raise StateFileError(
            f"{path}: a safetensors file but not a state of format {FORMAT!r} "
            f"(format {metadata.get(_META_FORMAT)!r}); {fix}"
        )
    try:
        state = _decode(json.loads(metadata[_META_TREE]), tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise StateFileError(f"{path}: the state's layout is damaged ({e}); {fix}") from e
    if not isinstance(state, dict):
        raise StateFileError(f"{path}: the state is a {type(state).__name__}, not a dict; {fix}")
    return state


# --- the tree <-> JSON ------------------------------------------------------------------------------

_TAG = "__state__"  # a dict with this key is an encoded value, not a plain dict


def _encode(x: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(x, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = x.detach().to("cpu").contiguous().clone()
        return {_TAG: "tensor", "name": name}
    if isinstance(x, np.ndarray):
        return {_TAG: "ndarray", "dtype": x.dtype.str, "shape": list(x.shape), "data": x.ravel().tolist()}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return {_TAG: "path", "value": str(x)}
    if isinstance(x, tuple):
        return {_TAG: "tuple", "items": [_encode(v, tensors) for v in x]}
    if isinstance(x, list):
        return [_encode(v, tensors) for v in x]
    if isinstance(x, dict):
        if all(isinstance(k, str) for k in x) and _TAG not in x:
            return {k: _encode(v, tensors) for k, v in x.items()}
        return {_TAG: "dict", "items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in x.items()]}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"a training state cannot hold a {type(x).__name__} ({x!r:.80})")


def _decode(x: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(x, list):
        return [_decode(v, tensors) for v in x]
    if not isinstance(x, dict):
        return x
    kind = x.get(_TAG)
    if kind is None:
        return {k: _decode(v, tensors) for k, v in x.items()}
    if kind == "tensor":
        return tensors[x["name"]]
    if kind == "ndarray":
        return np.asarray(x["data"], dtype=np.dtype(x["dtype"])).reshape(x["shape"])
    if kind == "path":
        return Path(x["value"])
    if kind == "tuple":
        return tuple(_decode(v, tensors) for v in x["items"])
    if kind == "dict":
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in x["items"]}
    raise ValueError(f"unknown entry kind {kind!r}")


def _hashable(k: Any) -> Any:
    if isinstance(k, (list, dict, torch.Tensor, np.ndarray)):
        raise ValueError(f"a dict key of type {type(k).__name__}")
    return k
